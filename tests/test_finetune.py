"""New objectives: a head added to a trained model, fresh or from an existing head."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet
import pytest
import torch

from unitarget.config import TaskSpec, merge, parse_task_spec
from unitarget.errors import ConfigError, UnitargetError
from unitarget.models.average import LogitAverage, first_member
from unitarget.pipeline import finetune, load_model, train


@pytest.fixture(scope="module")
def base_and_log(tmp_path_factory, tiny_log):
    from unitarget.config import Config

    config = merge(Config(), {
        "model": {"hidden": [32, 16], "tower_hidden": [8], "embedding_dim": 8},
        "train": {"batch_size": 512, "max_epochs": 2, "valid_days": 4, "threads": 1},
    })
    base = train(tiny_log, tmp_path_factory.mktemp("base") / "run", config)
    # a new objective: follow after a video ad (null elsewhere)
    video = pc.equal(tiny_log.column("format"), "video")
    follow_video = pc.if_else(video, tiny_log.column("follow"), pa.scalar(None, pa.int8()))
    return base, tiny_log.append_column("follow_video", follow_video)


def test_task_spec_syntax():
    spec = parse_task_spec("follow_video:label=follow_video,sources=ads,promotions,weight=2")
    assert spec == TaskSpec(name="follow_video", label="follow_video", sources=("ads", "promotions"), weight=2)
    with pytest.raises(ConfigError):
        parse_task_spec("x:label")


def test_frozen_finetune_adds_a_head_and_leaves_old_heads_unchanged(base_and_log, tmp_path):
    base, log = base_and_log
    assert isinstance(base.model, LogitAverage)  # the defaults publish the refit average: its old heads stay it
    task = TaskSpec(name="follow_video", label="follow_video", sources=("ads",))
    tuned = finetune(base, log, tmp_path / "tuned", task, freeze_encoder=True)
    assert tuned.model.task_names == [*base.model.task_names, "follow_video"]
    assert isinstance(load_model(tmp_path / "tuned").model, LogitAverage)
    before = base.probabilities(log)
    after = load_model(tmp_path / "tuned").probabilities(log)
    assert np.array_equal(before, after[:, : before.shape[1]])
    assert tuned.evaluate(log).ap("follow_video") > 0
    record = json.loads((tmp_path / "tuned" / "training.json").read_text())["old_heads_valid_ap"]
    assert set(record) == set(base.model.task_names)
    assert all(ap["before"] == ap["after"] and 0 < ap["before"] < 1 for ap in record.values())  # frozen


def test_cli_finetune_reports_the_old_heads_before_and_after(base_and_log, tmp_path):
    from typer.testing import CliRunner

    from unitarget.cli import app

    base, log = base_and_log
    pa.parquet.write_table(log, tmp_path / "log.parquet")
    base.save(tmp_path / "base")
    result = CliRunner().invoke(app, ["finetune", "--model", str(tmp_path / "base"), "--data", str(tmp_path / "log.parquet"),
                                      "--task", "follow_video:label=follow_video,sources=ads", "--out",
                                      str(tmp_path / "tuned")])
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "tuned" / "training.json").read_text())["old_heads_valid_ap"]
    assert "before → after" in result.output and f"{record['ad_stream']['before']:.4f}" in result.output


def test_init_from_copies_an_existing_head(base_and_log, tmp_path):
    base, log = base_and_log
    task = TaskSpec(name="follow_video", label="follow_video", sources=("ads",))
    overrides = {"train": {"max_epochs": 1, "patience": 1}, "optim": {"lr": 1e-12, "warmup_steps": 0}}
    tuned = finetune(base, log, tmp_path / "tuned", task, freeze_encoder=True, init_from="follow",
                     overrides=overrides)
    for a, b in zip(first_member(tuned.model).towers["follow_video"].parameters(),
                    first_member(base.model).towers["follow"].parameters()):
        assert torch.allclose(a, b, atol=1e-6)


def test_unfrozen_finetune_trains_everything(base_and_log, tmp_path):
    base, log = base_and_log
    task = TaskSpec(name="follow_video", label="follow_video", sources=("ads",))
    tuned = finetune(base, log, tmp_path / "tuned", task)
    changed = [not torch.equal(a, b) for a, b in zip(first_member(tuned.model).embedder.parameters(),
                                                     first_member(base.model).embedder.parameters())]
    assert any(changed)


def test_errors_name_the_problem(base_and_log, tmp_path):
    base, log = base_and_log
    with pytest.raises(UnitargetError, match="already has a task"):
        finetune(base, log, tmp_path / "x", TaskSpec(name="click", label="click", sources=("ads",)))
    with pytest.raises(UnitargetError, match="init-from"):
        finetune(base, log, tmp_path / "x", TaskSpec(name="n", label="follow", sources=("ads",)), init_from="nope")
    missing = TaskSpec(name="n", label="no_such_column", sources=("ads",))
    with pytest.raises(UnitargetError, match="no_such_column"):
        finetune(base, log, tmp_path / "x", missing)
