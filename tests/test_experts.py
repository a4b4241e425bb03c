"""MMoE, PLE/CGC and CAMoE: shapes, gates on the simplex, and masks that cut the right gradients."""


import numpy as np
import pyarrow as pa
import pytest
import torch

from unitarget.config import Config, ModelConfig, TaskSpec, merge
from unitarget.models import build_model
from unitarget.models.experts import SHARED, ExpertBank, GatedExperts
from unitarget.pipeline import load_model, train
from unitarget.presets import TABLE1_ORDER, apply_preset
from unitarget.training.tasks import TaskSet
from tests.helpers import tiny_batch, tiny_layout, with_formats

AUDIO, VIDEO, DISPLAY = 0, 1, 2
TASKS = tuple(
    TaskSpec(name=f"{label}_{fmt}", label=label, sources=("ads",), formats=(fmt,))
    for label in ("click", "stream") for fmt in ("audio", "video", "display")
)
GROUPS = {"click_audio": "audio", "stream_audio": "audio", **{f"{label}_{fmt}": "visual"
          for label in ("click", "stream") for fmt in ("video", "display")}}
ENCODERS = {  # name -> (model config, groups passed to build_model)
    "mmoe": (dict(encoder="mmoe", experts={"hidden": (8, 6), "shared": 3}), {}),
    "cgc": (dict(encoder="ple", experts={"hidden": (8, 6), "shared": 2, "specific": 1, "levels": 1}), {}),
    "ple": (dict(encoder="ple", experts={"hidden": (8, 6), "shared": 2, "specific": 1, "levels": 2}), {}),
    "camoe": (dict(encoder="camoe", experts={"hidden": (8, 6), "shared": 2, "specific": 2, "levels": 1},
                   cross={"layers": 1, "rank": 4}), GROUPS),
    "camoe-2-levels": (dict(encoder="camoe",
                            experts={"hidden": (8, 6), "shared": 2, "specific": 2, "levels": 2}),
                       GROUPS),
}


pytestmark = pytest.mark.usefixtures("one_thread")


def _model(name: str, tasks=TASKS):
    torch.manual_seed(0)
    kwargs, groups = ENCODERS[name]
    layout = tiny_layout()
    model = build_model(ModelConfig(tower_hidden=(4,), **kwargs), layout, [t.name for t in tasks], groups)
    return model, layout


def _format_batch(layout, formats: list[int]):
    return with_formats(tiny_batch(layout, [0] * len(formats), n_labels=2), formats)


def test_expert_bank_equals_separate_mlps():
    torch.manual_seed(0)
    bank = ExpertBank(5, 3, (4, 2), batch_norm=False, dropout=0.0)
    x = torch.randn(7, 5)
    out = bank(x)  # (B, n, H)
    assert out.shape == (7, 3, 2)
    for k in range(3):
        w1, b1 = bank.first.weight[k * 4:(k + 1) * 4], bank.first.bias[k * 4:(k + 1) * 4]
        expected = torch.relu(torch.relu(x @ w1.T + b1) @ bank.weights[0][k] + bank.biases[0][k])
        assert torch.allclose(out[:, k], expected, atol=1e-6)


@pytest.mark.parametrize("name", list(ENCODERS))
def test_shapes_one_representation_per_task_and_one_logit_per_task(name):
    model, layout = _model(name)
    batch = _format_batch(layout, [AUDIO, VIDEO, DISPLAY, AUDIO, VIDEO])
    x = model.cross(model.embedder(batch.features.ids, batch.features.dense))
    z = model.encoder(x)
    assert isinstance(z, list) and len(z) == len(TASKS)
    assert all(t.shape == (5, model.encoder.output_dim) for t in z)
    assert model(batch.features).shape == (5, len(TASKS))


@pytest.mark.parametrize("name", list(ENCODERS))
def test_gates_are_softmax_weights_over_the_experts_each_reader_may_use(name):
    model, layout = _model(name)
    batch = _format_batch(layout, [AUDIO, VIDEO, DISPLAY, AUDIO])
    gates = model.encoder.gate_weights(model.cross(model.embedder(batch.features.ids, batch.features.dense)))
    e = ENCODERS[name][0]["experts"]
    last = e.get("levels", 1) - 1
    for task in TASKS:
        weights = gates[f"level{last}/{task.name}"]
        specific = 0 if name == "mmoe" else e.get("specific", 0)
        assert weights.shape == (4, e["shared"] + specific)
    for weights in gates.values():
        assert torch.all(weights >= 0)
        assert torch.allclose(weights.sum(-1), torch.ones(len(weights)), atol=1e-6)
    if e.get("levels", 1) > 1:  # the shared gate of a lower level mixes every expert of that level
        owners = 3 if name == "camoe-2-levels" else len(TASKS)
        n_owned = 2 * e["specific"] if name == "camoe-2-levels" else len(TASKS) * e["specific"]
        assert gates[f"level0/{SHARED}"].shape == (4, e["shared"] + n_owned) and owners


def _grad(module) -> float:
    return sum(float(p.grad.abs().sum()) for p in module.parameters() if p.grad is not None)


@pytest.mark.parametrize("name", list(ENCODERS))
def test_an_audio_impression_updates_only_the_audio_tasks(name):
    """The format mask: audio rows give no gradient to video/display towers and gates, nor to the
    experts only they read; the shared experts and the audio path still learn."""
    model, layout = _model(name)
    tasks = TaskSet(TASKS, ("ads", "promotions"))
    batch = _format_batch(layout, [AUDIO] * 6)
    tasks.losses(model(batch.features), batch.targets).sum().backward()
    last = model.encoder.levels[-1]
    for task in TASKS:
        own = task.formats == ("audio",)
        assert (_grad(model.towers[task.name]) > 0) == own, task.name
        assert (_grad(last.gates[task.name]) > 0) == own, task.name
    assert _grad(last.banks[SHARED]) > 0
    if name == "camoe" or name == "camoe-2-levels":
        assert _grad(last.banks["audio"]) > 0 and _grad(last.banks["visual"]) == 0
    if name in ("cgc", "ple"):
        assert _grad(last.banks["click_audio"]) > 0 and _grad(last.banks["click_video"]) == 0
    if name in ("ple", "camoe-2-levels"):  # a lower level's owner gate feeds only that owner
        owner = "visual" if name == "camoe-2-levels" else "click_video"
        assert _grad(model.encoder.levels[0].gates[owner]) == 0


@pytest.mark.parametrize("name", list(ENCODERS))
def test_forward_tasks_computes_only_the_selected_tasks_with_the_same_values(name):
    model, layout = _model(name)
    model.eval()
    batch = _format_batch(layout, [AUDIO, VIDEO, DISPLAY])
    with torch.no_grad():
        assert torch.allclose(model.forward_tasks(batch.features, [0, 3]), model(batch.features)[:, [0, 3]], atol=1e-6)


def test_camoe_groups_come_from_the_task_formats_and_modality_map():
    config = merge(Config(), {"tasks": [t.model_dump() for t in TASKS], "model": {"encoder": "camoe"}})
    assert config.task_groups() == GROUPS
    explicit = merge(config, {"model": {"experts": {"groups": {"a": ["click_audio", "click_video"]}}}})
    assert explicit.task_groups() == {"click_audio": "a", "click_video": "a"}
    with pytest.raises(Exception, match="unknown tasks"):
        merge(config, {"model": {"experts": {"groups": {"a": ["nope"]}}}})
    with pytest.raises(Exception, match="no modality group"):  # a task would have no expert to read
        merge(Config(), {"model": {"encoder": "camoe", "experts": {"shared": 0}}})
    with pytest.raises(Exception, match="experts.shared >= 1"):
        ModelConfig(encoder="mmoe", experts={"shared": 0})


def test_ungrouped_tasks_read_the_shared_experts_only():
    encoder = GatedExperts(5, ["a", "b"], {"a": "g"}, shared=2, specific=1, hidden=(4,), levels=1,
                           batch_norm=False, dropout=0.0)
    gates = encoder.gate_weights(torch.randn(3, 5))
    assert gates["level0/a"].shape == (3, 3) and gates["level0/b"].shape == (3, 2)


@pytest.mark.parametrize("encoder", ["shared_bottom", "mmoe", "ple", "camoe"])
def test_every_encoder_trains_with_every_table1_preset(encoder, tiny_log, tmp_path, fast_config):
    rows = tiny_log.take(pa.array(np.arange(0, tiny_log.num_rows, 4)))  # every 4th row: fast
    experts = {"hidden": [8], "shared": 2, "levels": 2}
    base = merge(fast_config, {"model": {"encoder": encoder, "experts": experts,
                                         "cross": {"layers": 1, "rank": 4}},
                               "train": {"max_epochs": 1, "patience": 1, "batch_size": 256}})
    for preset in TABLE1_ORDER:
        config = apply_preset(base, preset)
        trained = train(rows, tmp_path / preset, config)
        assert np.isfinite(trained.probabilities(rows.slice(0, 50))).all()
    again = load_model(tmp_path / TABLE1_ORDER[-1])
    first = rows.slice(0, 50)
    assert np.allclose(again.probabilities(first), trained.probabilities(first), atol=1e-6)


def test_format_mask_on_the_shared_bottom_cuts_only_the_other_formats_towers():
    torch.manual_seed(0)
    layout = tiny_layout()
    model = build_model(ModelConfig(hidden=(8,), tower_hidden=(4,)), layout, [t.name for t in TASKS])
    tasks = TaskSet(TASKS, ("ads", "promotions"))
    batch = _format_batch(layout, [VIDEO] * 5)
    assert model(batch.features).shape == (5, len(TASKS))
    tasks.losses(model(batch.features), batch.targets).sum().backward()
    for task in TASKS:
        assert (_grad(model.towers[task.name]) > 0) == (task.formats == ("video",)), task.name
    assert _grad(model.encoder) > 0
