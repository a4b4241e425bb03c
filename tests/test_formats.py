"""The format mask (CAMoE's adaptive loss masking) and format-aware evaluation."""

import numpy as np
import pyarrow as pa
import pytest
import torch

from unitarget.config import DEFAULT_TASKS, Config, TaskSpec, merge
from unitarget.data.features import FeatureEncoder
from unitarget.errors import ConfigError
from unitarget.evaluation.formats import ALL_FORMATS, evaluate_formats
from unitarget.evaluation.heads import head_for
from unitarget.training.tasks import TaskSet
from tests.helpers import tiny_batch, tiny_layout, with_formats

SOURCES = ("ads", "promotions")


def _spec(name, label, formats=None):
    return TaskSpec(name=name, label=label, sources=("ads",), formats=formats)


def test_encoder_writes_each_rows_format_index(tiny_log):
    config = Config()
    encoder = FeatureEncoder(config.features, config.sources, ("stream",)).fit(tiny_log)
    batch = encoder.transform(tiny_log)
    names = np.array(["audio", "video", "display", None], dtype=object)[batch.targets.format.numpy()]
    assert (names == np.array(tiny_log.column("format").to_pylist(), dtype=object)).all()
    no_column = encoder.transform(tiny_log.drop_columns(["format"]).slice(0, 5))
    assert no_column.targets.format.tolist() == [3] * 5  # absent column: no format, no format-filtered task learns
    assert len(batch.take(torch.tensor([0, 2])).targets.format) == 2 and len(batch.slice(0, 3).targets.format) == 3


def test_format_mask_zeroes_other_formats_and_null_format_rows():
    tasks = TaskSet([_spec("click_audio", "click", ("audio",)), _spec("click", "click")], SOURCES)
    batch = with_formats(tiny_batch(tiny_layout(), [0, 0, 0, 0], n_labels=1), [0, 1, 2, 3])
    weights = tasks.loss_weights(batch.targets)
    assert weights[:, 0].tolist() == [1.0, 0.0, 0.0, 0.0]  # click_audio: audio rows only
    assert weights[:, 1].tolist() == [1.0, 1.0, 1.0, 1.0]  # no filter: every row


def test_format_mask_cuts_the_logit_gradient_of_other_formats():
    specs = [_spec("click_audio", "click", ("audio",)), _spec("click_video", "click", ("video",))]
    tasks = TaskSet(specs, SOURCES)
    batch = with_formats(tiny_batch(tiny_layout(), [0, 0, 0], n_labels=1), [0, 0, 1])
    logits = torch.zeros(3, 2, requires_grad=True)
    tasks.losses(logits, batch.targets).sum().backward()
    assert logits.grad[:2, 1].abs().sum() == 0 and logits.grad[2, 0] == 0
    assert logits.grad[:2, 0].abs().sum() > 0 and logits.grad[2, 1] != 0


def test_default_tasks_need_no_format():
    tasks = TaskSet(DEFAULT_TASKS, SOURCES)
    assert not tasks.masks_formats
    batch = tiny_batch(tiny_layout(), [0, 1], n_labels=len(tasks.labels))  # format=None
    assert tasks.loss_weights(batch.targets).shape == (2, len(tasks))


def test_format_filtered_task_without_batch_format_is_an_error():
    tasks = TaskSet([_spec("click_audio", "click", ("audio",))], SOURCES)
    with pytest.raises(ValueError, match="Targets.format"):
        tasks.loss_weights(tiny_batch(tiny_layout(), [0], n_labels=1).targets)


def test_misspelt_format_is_rejected_naming_the_field():
    with pytest.raises(ConfigError, match="tasks.0.formats"):
        task = {"name": "x", "label": "click", "sources": ["ads"], "formats": ["podcast"]}
        merge(Config(), {"tasks": [task]})


def test_format_task_prefers_the_masked_head_then_the_named_head_then_the_pooled_head():
    masked = [_spec("click_a", "click", ("audio",)), _spec("click", "click")]
    assert head_for(masked, "click", fmt="audio") == "click_a"
    assert head_for(masked, "click", fmt="video") == "click"
    unmasked = [_spec("click_audio", "click"), _spec("click_video", "click")]
    assert head_for(unmasked, "click", fmt="video") == "click_video"
    assert head_for([_spec("click_video", "click", ("video",))], "click", fmt="audio") is None


def test_evaluate_formats_scores_each_format_with_its_head_and_pools_them():
    tasks = [_spec(f"click_{f}", "click", (f,)) for f in ("audio", "video", "display")]
    formats = np.array(["audio", "audio", "video", "video", "display", "display", None], dtype=object)
    y = np.array([1, 0, 0, 1, 1, 0, 1], dtype=float)
    good = np.array([0.9, 0.1, 0.2, 0.8, 0.7, 0.3, 0.5])
    predictions = {"click_audio": good, "click_video": good, "click_display": 1 - good}  # display inverted
    rows = {r.format: r for r in evaluate_formats(predictions, {"click": y}, formats, tasks, ["click"])}
    assert rows["audio"].ap == 1.0 and rows["video"].ap == 1.0 and rows["display"].ap == 0.5
    assert rows["audio"].n == 2 and rows[ALL_FORMATS].n == 6  # the null-format row joins no format
    assert rows[ALL_FORMATS].task == "click_audio+click_video+click_display"


def test_format_evaluation_on_a_table_column():
    formats = np.array(pa.array(["audio", "video"]).to_pylist(), dtype=object)
    rows = evaluate_formats({"click": np.array([0.2, 0.9])}, {"click": np.array([0.0, 1.0])}, formats,
                            [_spec("click", "click")], ["click"])
    assert [r.format for r in rows] == ["audio", "video", "display", ALL_FORMATS]
    assert np.isnan(rows[0].ap) and rows[1].ap == 1.0  # audio has no positive: AP undefined, not 0

