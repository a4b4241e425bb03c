"""DIN target attention: it learns "is the candidate in the history", padding changes nothing, training, inference and
export give one answer, the ONNX graph and the service score it, and it is on by default and refused where it cannot
apply."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pyarrow as pa
import pytest
import torch
from torch import nn
from pydantic import ValidationError

from tests.serving_fixtures import FAST, LiveServer
from unitarget.config import Config, ModelConfig, merge
from unitarget.data.batch import Features
from unitarget.data.features import FeatureEncoder, FeatureLayout
from unitarget.errors import UnitargetError
from unitarget.evaluation.metrics import average_precision
from unitarget.models import build_model
from unitarget.pipeline import load_model, train
from unitarget.serving.export import ProbabilityModel, export_model

pytestmark = pytest.mark.usefixtures("one_thread")

SHOWS = 300  # shows in the synthetic id space: too many for the plain MLP to memorise every pair
HISTORY = 6
HISTORY_BAG = "user_history_shows"
ATTENTION = {"bags": [HISTORY_BAG], "hidden": [16]}


def history_layout(history: int = HISTORY) -> FeatureLayout:
    """show_id, one other categorical feature, and a history bag sharing show_id's block (rows 1..SHOWS + 1)."""
    return FeatureLayout(
        categorical=("show_id", "user_country"),
        bags=((HISTORY_BAG, 2, 2 + history),),
        dense=(("d", 1),),
        offsets={"show_id": 1, "user_country": SHOWS + 2, HISTORY_BAG: 1},
        table_rows=SHOWS + 5,
        groups={"show_id": "content", "user_country": "user", HISTORY_BAG: "user", "d": "content"},
    )


def in_history_rows(n: int, seed: int) -> tuple[Features, torch.Tensor]:
    """Users with 1..HISTORY distinct shows streamed; the candidate is one of them (label 1) half the time, else a
    show outside the history (label 0)."""
    g = np.random.default_rng(seed)
    ids = np.zeros((n, 2 + HISTORY), dtype=np.int32)
    labels = g.random(n) < 0.5
    for i in range(n):
        shows = 2 + g.permutation(SHOWS)[:HISTORY + 1]  # rows 2.. are known shows (row 1 is show_id's OOV)
        length = g.integers(1, HISTORY + 1)
        ids[i, 2:2 + length] = shows[:length]
        ids[i, 0] = shows[g.integers(0, length)] if labels[i] else shows[HISTORY]
    ids[:, 1] = SHOWS + 2 + g.integers(0, 3, n)
    return Features(torch.from_numpy(ids), torch.zeros(n, 1)), torch.from_numpy(labels).float()


def small_config(**model) -> ModelConfig:
    """A small deep model with nothing but what ``model`` turns on (the defaults' attention, wide terms and dropouts
    off)."""
    plain = {"attention": {"bags": []}, "wide": False, "dropout": 0.0, "embedding_dropout": {}}
    return ModelConfig(embedding_dim=8, hidden=(32,), tower_hidden=(8,), batch_norm=False, **{**plain, **model})


def fit_first_task(model: nn.Module, features: Features, labels: torch.Tensor, *, epochs: int, batch_size: int) -> None:
    """Adam (lr 0.01) on the binary cross-entropy of the model's first task, shuffled minibatches."""
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(epochs):
        for batch in torch.randperm(len(labels)).split(batch_size):
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                model(Features(features.ids[batch], features.dense[batch]))[:, 0], labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()


def fitted_ap(config: ModelConfig) -> float:
    """Held-out AP of a model trained (fixed seed) to tell whether the candidate is in the history."""
    torch.manual_seed(0)
    model = build_model(config, history_layout(), ["in_history"])
    features, labels = in_history_rows(4096, seed=1)
    fit_first_task(model, features, labels, epochs=12, batch_size=128)
    test, test_labels = in_history_rows(2048, seed=2)
    model.eval()
    with torch.no_grad():
        scores = model(test)[:, 0].numpy()
    return average_precision(test_labels.numpy(), scores)


def test_attention_learns_whether_the_candidate_is_in_the_history():
    without, with_attention = fitted_ap(small_config()), fitted_ap(small_config(attention=ATTENTION))
    print(f"held-out AP of 'candidate in history': without attention {without:.3f}, with {with_attention:.3f}")
    assert with_attention > 0.9
    assert with_attention > without + 0.1


def trained_eval_model(config: ModelConfig, layout: FeatureLayout):
    torch.manual_seed(3)
    model = build_model(config, layout, ["a", "b"])
    features, _ = in_history_rows(256, seed=4)
    model(features).sum().backward()  # one step, so that no weight is at its initial value
    with torch.no_grad():
        for p in model.parameters():
            if p.grad is not None:
                p -= 0.05 * p.grad
    model.zero_grad()
    return model.eval()


@pytest.mark.parametrize("grad", [False, True])
def test_padding_a_history_leaves_every_prediction_unchanged(grad):
    config = small_config(attention=ATTENTION)
    short = trained_eval_model(config, history_layout())
    long = build_model(config, history_layout(HISTORY + 3), ["a", "b"]).eval()
    long.load_state_dict(short.state_dict())  # no weight depends on the bag length
    features, _ = in_history_rows(64, seed=5)
    padded = Features(torch.cat([features.ids, torch.zeros(64, 3, dtype=torch.int32)], dim=1), features.dense)
    with torch.set_grad_enabled(grad):
        torch.testing.assert_close(long(padded), short(features), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("encoder", ["shared_bottom", "mmoe", "ple", "camoe"])
def test_training_inference_and_export_paths_agree_for_every_encoder(encoder):
    model = trained_eval_model(small_config(encoder=encoder, attention=ATTENTION), history_layout())
    plain = build_model(small_config(encoder=encoder), history_layout(), ["a", "b"])
    assert model.embedder.output_dim == plain.embedder.output_dim + 8 + 1  # pooled history and its dot product
    features, _ = in_history_rows(64, seed=6)
    training_path = model(features)
    with torch.no_grad():
        inference_path = model(features)
        exported = ProbabilityModel(model)(features.ids, features.dense)
    torch.testing.assert_close(training_path.detach(), inference_path, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(exported, torch.sigmoid(inference_path), atol=1e-6, rtol=1e-5)


def test_the_lazy_optimizers_sparse_gradient_equals_the_dense_one():
    model = trained_eval_model(small_config(attention=ATTENTION), history_layout())
    features, _ = in_history_rows(64, seed=7)
    grads = []
    for sparse in (False, True):
        model.zero_grad()
        model.embedder.sparse_grad = sparse
        model(features).sum().backward()
        grads.append(model.embedder.table.weight.grad)
    assert grads[1].is_sparse
    torch.testing.assert_close(grads[1].to_dense(), grads[0])


def test_on_by_default_off_when_empty_and_refused_where_it_cannot_apply():
    assert Config().shared_vocabularies() == {"user_history_shows": "show_id", "user_followed_shows": "show_id"}
    assert build_model(ModelConfig(), history_layout(), ["a"]).embedder.attention is not None
    off = build_model(small_config(), history_layout(), ["a"])
    assert off.embedder.attention is None and not any("attention" in k for k in off.state_dict())
    assert Config(model={"attention": {"bags": []}}).shared_vocabularies() == {}
    with pytest.raises(ValidationError, match=r"not list \(bag\) features: \['show_genre'\]"):
        Config(model={"attention": {"bags": ["show_genre"]}})
    with pytest.raises(ValidationError, match="candidate 'user_history_shows' is not a categorical"):
        Config(model={"attention": {"bags": ["user_followed_shows"], "candidate": HISTORY_BAG}})
    absent = build_model(small_config(attention={"bags": ["user_followed_shows"]}), history_layout(), ["a"])
    assert absent.embedder.attention is None  # a column the log lacks is skipped, as the encoder skips it
    unshared = replace(history_layout(), offsets={**history_layout().offsets, HISTORY_BAG: SHOWS + 5})
    with pytest.raises(UnitargetError, match="encoded with their own vocabulary"):
        build_model(small_config(attention=ATTENTION), unshared, ["a"])


def test_the_history_and_the_candidate_share_one_vocabulary(tiny_log):
    rows = tiny_log.slice(0, 2_000)
    streamed = rows.column(HISTORY_BAG).to_pylist()
    streamed[0] = [rows.column("show_id")[0].as_py(), "a-show-only-ever-streamed"] * 2  # min_count 2
    rows = rows.set_column(rows.schema.get_field_index(HISTORY_BAG), HISTORY_BAG, pa.array(streamed))
    config = Config(model={"attention": {"bags": [HISTORY_BAG]}})
    encoder = FeatureEncoder(config.features, config.sources, ("stream",), config.shared_vocabularies()).fit(rows)
    layout = encoder.layout_
    assert layout.offsets[HISTORY_BAG] == layout.offsets["show_id"] != layout.offsets["user_followed_shows"]
    ids = encoder.transform_features(rows).ids
    start = next(first for name, first, _ in layout.bags if name == HISTORY_BAG)
    show = layout.categorical.index("show_id")
    assert ids[0, start] == ids[0, show] and ids[0, start + 1] != layout.offsets["show_id"]  # not OOV
    reloaded = FeatureEncoder.from_dict(encoder.to_dict())
    assert torch.equal(reloaded.transform_features(rows).ids, ids)


def test_exported_onnx_graph_and_the_service_score_an_attention_model(tmp_path, tiny_log_path, tiny_log):
    import httpx

    from unitarget.serving.app import create_app
    from unitarget.serving.schemas import ScoreRequest
    from unitarget.serving.settings import ServiceSettings
    from unitarget.serving.tables import request_table

    attention = {"bags": [HISTORY_BAG, "user_followed_shows"]}
    config = merge(Config(), {**FAST, "model": {**FAST["model"], "attention": attention},
                              "train": {**FAST["train"], "max_epochs": 1},
                              "optim": {**FAST["optim"], "embedding_updates": "lazy"}})  # the sparse path too
    train(tiny_log_path, tmp_path / "run", config)
    report = export_model(tmp_path / "run", tmp_path / "models" / "v1")
    print(f"ONNX Runtime vs PyTorch with target attention: max abs difference {report.max_abs_diff:.3g}")
    assert report.max_abs_diff <= 1e-4
    row = tiny_log.slice(0, 1).to_pylist()[0]
    user = {k: row[k] for k in ("user_id", "user_country", "user_age_bucket", HISTORY_BAG, "user_followed_shows")}
    candidates = [{"id": f"c{i}", "show_id": r["show_id"], "show_genre": r["show_genre"]}
                  for i, r in enumerate(tiny_log.slice(0, 3).to_pylist())]
    body = {"user": user, "context": {"ts": "2026-01-20T08:30:00Z"}, "candidates": candidates}
    server = LiveServer(create_app(ServiceSettings.for_model(tmp_path / "models" / "v1"))).start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            answer = http.post("/v1/score", json=body)
    finally:
        server.stop()
    assert answer.status_code == 200, answer.text
    result = answer.json()
    got = np.array([[c["probabilities"][t] for t in result["tasks"]] for c in result["candidates"]])
    request = ScoreRequest.model_validate(body)
    expected = load_model(tmp_path / "run").probabilities(
        request_table(request.user, request.context, request.candidates))
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_the_activation_unit_is_the_mlp_over_the_concatenation():
    """The factored first layer computes DIN's MLP([h, c, h − c, h ⊙ c]) exactly, values and gradients."""
    from unitarget.models.attention import ActivationUnit

    torch.manual_seed(0)
    for hidden in [(8,), (8, 4)]:
        unit = ActivationUnit(6, hidden)
        tokens, candidate = torch.randn(5, 7, 6, requires_grad=True), torch.randn(5, 6, requires_grad=True)
        c = candidate.unsqueeze(1).expand_as(tokens)
        concatenated = unit.out(nn.Sequential(*unit.mlp)(torch.cat([tokens, c, tokens - c, tokens * c], -1))).squeeze(-1)
        factored = unit(tokens, candidate)
        torch.testing.assert_close(factored, concatenated, atol=1e-5, rtol=1e-5)
        inputs = (tokens, candidate, *unit.parameters())
        for ours, theirs in zip(torch.autograd.grad(factored.sum(), inputs), torch.autograd.grad(concatenated.sum(), inputs)):
            torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
