"""The linear baseline (``logreg`` preset, models/linear.py): it learns crosses, keeps the masks, round-trips through
a run directory, runs from the CLI and exports to ONNX like the deep models."""

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from unitarget.cli import app
from unitarget.config import Config, TaskSpec, merge
from unitarget.data.batch import Batch, Features, Targets
from unitarget.data.features import FeatureEncoder, FeatureLayout
from unitarget.errors import ConfigError, UnitargetError
from unitarget.evaluation.metrics import average_precision
from unitarget.pipeline import finetune, load_model, split_training_log, train
from unitarget.presets import apply_preset
from unitarget.serving.export import export_model
from unitarget.training.loop import MemoryStore, fit
from unitarget.training.setup import build_setup
from unitarget.training.tasks import labels_of

FAST = """
[train]
batch_size = 512
max_epochs = 1
valid_days = 4
threads = 1
[model.linear]
cross_buckets = 4096
"""


def _fit(config: Config, layout: FeatureLayout, batch: Batch):
    """Train with the project's setup and loop for ``train.max_epochs``, keeping the last epoch's weights."""
    setup = build_setup(config, layout, batch)
    fit(setup.model, setup.tasks, setup.batches, balancer=setup.balancer,
        validate=lambda _: (0.0, {}), train_config=config.train, optim_config=config.optim, store=MemoryStore())
    return setup.model.eval()


def _cross_world(rows: int, seed: int) -> tuple[FeatureLayout, Batch]:
    """Three fields of 6 values; the label depends on the parity of a + b only (no effect of a or b alone)."""
    g = np.random.default_rng(seed)
    values = g.integers(0, 6, (rows, 3))
    p = np.where((values[:, 0] + values[:, 1]) % 2 == 0, 0.7, 0.05)
    labels = torch.from_numpy((g.random(rows) < p).astype(np.float32))[:, None]
    offsets = {"a": 1, "b": 7, "c": 13}
    layout = FeatureLayout(categorical=("a", "b", "c"), bags=(), dense=(), offsets=offsets, table_rows=19, groups={})
    ids = torch.from_numpy((values + np.array([1, 7, 13])).astype(np.int32))
    targets = Targets(labels, torch.ones_like(labels, dtype=torch.bool), torch.zeros(rows, dtype=torch.int64),
                      torch.zeros(rows, dtype=torch.int64))
    return layout, Batch(Features(ids, torch.zeros(rows, 0)), targets)


def test_crosses_learn_an_interaction_that_one_hot_features_cannot(one_thread):
    task = TaskSpec(name="y", label="stream", sources=("ads",))
    base = merge(Config(), {"sources": ["ads"], "tasks": [task.model_dump()], "model": {"encoder": "linear"},
                            "sampling": {"balanced": False, "ratios": {"ads": 1.0}}, "train": {"batch_size": 256, "max_epochs": 3, "validate_every": 1.0},
                            "optim": {"lr": 0.05, "warmup_steps": 0}})
    layout, batch = _cross_world(4_000, seed=0)
    _, test = _cross_world(2_000, seed=1)
    aps = {}
    for name, crosses in (("crossed", None), ("one-hot", [])):
        config = merge(base, {"model": {"linear": {"crosses": crosses, "cross_buckets": 1024}}})
        model = _fit(config, layout, batch)
        with torch.no_grad():
            scores = torch.sigmoid(model(test.features)).numpy()[:, 0]
        aps[name] = average_precision(test.targets.labels.numpy()[:, 0], scores)
    base_rate = float(test.targets.labels.mean())
    assert aps["one-hot"] < base_rate + 0.1  # parity of a + b is invisible to a and b alone
    assert aps["crossed"] > 0.6 and aps["crossed"] > aps["one-hot"] + 0.2


def test_an_ad_impression_never_updates_promo_stream(tiny_log, fast_config, one_thread):
    config = merge(apply_preset(fast_config, "logreg"),
                   {"train": {"max_epochs": 1}, "model": {"linear": {"cross_buckets": 4096}}})
    rows = split_training_log(tiny_log, config).older
    encoder = FeatureEncoder(config.features, config.sources, labels_of(config.tasks)).fit(rows)
    batch = encoder.transform(rows)
    ads = (batch.targets.source == config.sources.index("ads")).unsqueeze(1)
    flipped = Targets(torch.where(ads, 1 - batch.targets.labels, batch.targets.labels), batch.targets.label_mask,
                      batch.targets.source, batch.targets.tier, batch.targets.format)
    models = [_fit(config, encoder.layout_, batch), _fit(config, encoder.layout_, Batch(batch.features, flipped))]
    with torch.no_grad():
        same, other = (model(batch.features) for model in models)
    names = [t.name for t in config.tasks]
    promo, ad = names.index("promo_stream"), names.index("ad_stream")
    assert torch.equal(same[:, promo], other[:, promo])  # the ads' labels cannot reach promo_stream
    assert not torch.allclose(same[:, ad], other[:, ad])  # ...but they do train ad_stream


@pytest.fixture(scope="module")
def logreg_run(tmp_path_factory, tiny_log):
    config = merge(apply_preset(Config(), "logreg"), {
        "train": {"batch_size": 512, "max_epochs": 2, "valid_days": 4, "threads": 1},
        "optim": {"warmup_steps": 5}, "model": {"linear": {"cross_buckets": 4096}},
    })
    out = tmp_path_factory.mktemp("logreg") / "run"
    return out, train(tiny_log, out, config)


def test_train_save_load_gives_equal_predictions(logreg_run, tiny_log):
    out, trained = logreg_run
    rows = tiny_log.slice(0, 2_000)
    np.testing.assert_array_equal(trained.probabilities(rows), load_model(out).probabilities(rows))
    assert trained.config.model.encoder == "linear"
    assert trained.evaluate(rows).ap("ads_stream") > 0


def test_the_linear_model_exports_to_onnx_with_parity(logreg_run, tmp_path):
    out, _ = logreg_run
    report = export_model(out, tmp_path / "v1")
    assert report.max_abs_diff < 1e-4 and len(report.tasks) == 5


def test_finetune_refuses_a_linear_model_with_a_reason(logreg_run, tiny_log, tmp_path):
    _, trained = logreg_run
    task = TaskSpec(name="follow2", label="follow", sources=("ads",))
    with pytest.raises(UnitargetError, match="linear model"):
        finetune(trained, tiny_log, tmp_path / "ft", task)


def test_preset_logreg_trains_from_the_cli(tmp_path, tiny_log_path):
    (tmp_path / "fast.toml").write_text(FAST)
    result = CliRunner().invoke(app, ["train", "--data", str(tiny_log_path), "--out", str(tmp_path / "run"),
                                      "--config", str(tmp_path / "fast.toml"), "--preset", "logreg"])
    assert result.exit_code == 0, result.output
    assert load_model(tmp_path / "run").config.model.encoder == "linear"


def test_linear_configuration_is_validated():
    with pytest.raises(ConfigError, match="cross.layers"):
        merge(Config(), {"model": {"encoder": "linear", "cross": {"layers": 2}}})
    with pytest.raises(ConfigError, match="non-categorical"):
        merge(Config(), {"model": {"linear": {"crosses": [["user_id", "show_topics"]]}}})
    with pytest.raises(ConfigError, match="itself"):
        merge(Config(), {"model": {"linear": {"crosses": [["user_id", "user_id"]]}}})


@pytest.mark.parametrize("sparse", [False, True])
def test_the_training_lookup_gives_the_inference_sums_and_the_plain_gradient(sparse):
    from tests.helpers import tiny_batch, tiny_layout
    from unitarget.model_config import LinearConfig
    from unitarget.models.linear import LinearTerms

    layout = tiny_layout()
    terms = LinearTerms(layout, 3, LinearConfig(cross_buckets=64))
    torch.nn.init.normal_(terms.table.weight)
    terms.sparse_grad = sparse
    features = tiny_batch(layout, [0] * 7).features
    with torch.no_grad():
        expected = terms(features.ids, features.dense)
    fused = terms(features.ids, features.dense)
    assert torch.allclose(fused, expected, atol=1e-6)
    fused.square().sum().backward()
    grad = terms.table.weight.grad
    table = terms.table.weight.detach().clone().requires_grad_()
    plain = torch.nn.functional.embedding(terms.structure.rows(features.ids), table)
    (plain * terms.structure.row_weights(features.ids).unsqueeze(-1)).sum(1).add(features.dense @ terms.dense.detach()) \
        .square().sum().backward()
    reference = table.grad
    reference[0] = 0  # the padding row is never updated
    assert torch.allclose(grad.to_dense() if sparse else grad, reference, atol=1e-5)
