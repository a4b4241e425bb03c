"""Wide & Deep (``model.wide``): each task's logit gains its own linear term, which learns what the deep part
cannot reach quickly, exports to ONNX with parity, and fine-tunes per head."""

import numpy as np
import pytest
import torch

from tests.helpers import tiny_batch, tiny_layout
from unitarget.config import Config, ModelConfig, TaskSpec, merge
from unitarget.data.batch import Batch, Features, Targets
from unitarget.data.features import FeatureLayout
from unitarget.errors import UnitargetError
from unitarget.models import build_model
from unitarget.models.average import first_member
from unitarget.pipeline import finetune, train
from unitarget.serving.export import export_model
from unitarget.training.loop import MemoryStore, fit
from unitarget.training.setup import build_setup

WIDE = {"model": {"wide": True, "wide_crosses": True, "linear": {"cross_buckets": 4096}}}


def test_the_wide_term_is_each_tasks_own_linear_sum_added_to_its_deep_logit():
    layout = tiny_layout()
    torch.manual_seed(0)
    model = build_model(ModelConfig(hidden=(16, 8), tower_hidden=(4,), wide=True), layout, ["a", "b", "c"]).eval()
    features = tiny_batch(layout, [0, 1] * 4).features
    with torch.no_grad():
        started = model(features)
        model.wide.table.weight.normal_()  # a fresh wide term is zero: the model starts as the deep one
        wide = model(features)
        deep = torch.stack([tower(model.encoder(model.cross(model.embedder(features.ids, features.dense)), None))
                            for tower in model.towers.values()], dim=1)
        sums = model.wide.structure.sums(model.wide.table.weight, model.wide.dense, features.ids, features.dense)
    assert torch.allclose(started, deep, atol=1e-6)
    assert torch.allclose(wide, deep + sums, atol=1e-5) and not torch.allclose(wide, deep, atol=1e-2)
    with torch.no_grad():
        assert torch.allclose(model.forward_tasks(features, [2, 0]), wide[:, [2, 0]], atol=1e-6)


def _id_world(rows: int, seed: int) -> tuple[FeatureLayout, Batch]:
    """One field of 400 ids, each with its own rate (no structure the embedding could share across ids)."""
    g = np.random.default_rng(seed)
    rates = np.random.default_rng(99).beta(0.3, 3.0, 400)
    values = g.integers(0, 400, rows)
    labels = torch.from_numpy((g.random(rows) < rates[values]).astype(np.float32))[:, None]
    layout = FeatureLayout(categorical=("a",), bags=(), dense=(), offsets={"a": 1}, table_rows=401, groups={"a": "content"})
    targets = Targets(labels, torch.ones_like(labels, dtype=torch.bool), torch.zeros(rows, dtype=torch.int64),
                      torch.zeros(rows, dtype=torch.int64))
    return layout, Batch(Features(torch.from_numpy(values[:, None] + 1).int(), torch.zeros(rows, 0)), targets)


def test_a_wide_model_learns_per_id_rates_in_one_epoch_that_the_deep_one_lags_on(one_thread):
    """Each id's own rate is a weight of the wide term, one step from the gradient; the deep model must push it
    through an embedding and two layers. Log loss after one short epoch, against the true rates' (the floor)."""
    task = TaskSpec(name="y", label="stream", sources=("ads",))
    base = merge(Config(), {"sources": ["ads"], "tasks": [task.model_dump()],
                            "sampling": {"balanced": False, "ratios": {"ads": 1.0}},
                            "model": {"hidden": [32, 16], "tower_hidden": [8], "embedding_dim": 4,
                                      "linear": {"crosses": [], "cross_buckets": 1}},
                            "train": {"batch_size": 256, "max_epochs": 1}, "optim": {"warmup_steps": 0, "lr": 0.01}})
    layout, batch = _id_world(12_000, seed=0)
    _, test = _id_world(20_000, seed=1)
    y = test.targets.labels[:, 0]
    losses = {}
    for wide in (False, True):
        config = merge(base, {"model": {"wide": wide}})
        setup = build_setup(config, layout, batch)
        fit(setup.model, setup.tasks, setup.batches, balancer=setup.balancer, validate=lambda _: (0.0, {}),
            train_config=config.train, optim_config=config.optim, store=MemoryStore())
        with torch.no_grad():
            p = torch.sigmoid(setup.model.eval()(test.features)[:, 0])
        losses[wide] = float(torch.nn.functional.binary_cross_entropy(p, y))
    print(f"one-epoch test log loss: deep {losses[False]:.4f}, wide & deep {losses[True]:.4f}")
    assert losses[True] < losses[False] - 0.002


@pytest.fixture(scope="module")
def wide_run(tmp_path_factory, tiny_log):
    config = merge(Config(), {**WIDE, "model": {**WIDE["model"], "hidden": [32, 16], "tower_hidden": [8],
                                                "embedding_dim": 8},
                              "train": {"batch_size": 512, "max_epochs": 1, "valid_days": 4, "threads": 1},
                              "optim": {"warmup_steps": 5}})
    out = tmp_path_factory.mktemp("wide") / "run"
    return out, train(tiny_log, out, config)


def test_a_wide_model_exports_to_onnx_with_parity(wide_run, tmp_path):
    out, trained = wide_run
    assert first_member(trained.model).wide.table.weight.abs().sum() > 0  # it was trained
    report = export_model(out, tmp_path / "v1")
    assert report.max_abs_diff < 1e-4 and len(report.tasks) == 5


def test_finetune_gives_the_new_head_a_wide_term_and_freezing_keeps_the_old_ones(wide_run, tiny_log, tmp_path):
    _, trained = wide_run
    task = TaskSpec(name="follow2", label="follow", sources=("ads",))
    tuned = finetune(trained, tiny_log, tmp_path / "ft", task, freeze_encoder=True)
    assert tuned.model.task_names[-1] == "follow2"
    assert first_member(tuned.model).wide.table.weight[:, 5].abs().sum() > 0  # the new head's column learned
    assert torch.equal(first_member(tuned.model).wide.table.weight[:, :5], first_member(trained.model).wide.table.weight)  # the old ones kept
    rows = tiny_log.slice(0, 500)
    np.testing.assert_allclose(tuned.probabilities(rows)[:, :5], trained.probabilities(rows), atol=1e-6)


def test_the_linear_encoder_ignores_the_wide_switch(tiny_log):
    """``encoder = "linear"`` is the wide part alone: it builds the linear baseline whatever model.wide says."""
    config = merge(Config(), {"model": {"encoder": "linear", "wide": True}})
    from unitarget.models.linear import LinearTerms
    model = build_model(config.model, tiny_layout(), ["a"])
    assert isinstance(model.embedder, LinearTerms) and model.wide is None


def test_a_frozen_finetune_of_a_wide_model_refuses_weight_decay(wide_run, tiny_log, tmp_path):
    _, trained = wide_run
    task = TaskSpec(name="follow2", label="follow", sources=("ads",))
    with pytest.raises(UnitargetError, match="weight decay"):
        finetune(trained, tiny_log, tmp_path / "ft", task, freeze_encoder=True, overrides={"optim": {"weight_decay": 1e-4}})
    assert not (tmp_path / "ft").exists()
