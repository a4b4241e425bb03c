"""Checkpoints inside an epoch: a run stopped (Ctrl-C) or killed (SIGKILL, even in the middle of a
checkpoint write) resumes to exactly the weights and history of an uninterrupted run; the step and
time triggers fire where they should, and never change the weights."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from unitarget.config import merge
from unitarget.errors import ConfigError
from unitarget.io import remove_temporary_files
from unitarget.pipeline import load_model, train
from unitarget.runs import CHECKPOINT_FILE, DataSpan, Staging, fingerprint, training_part
from unitarget.training import checkpoint, trigger
from unitarget.training.hooks import SilentHooks
from unitarget.training.trigger import CheckpointTrigger
from tests.helpers import StopAt

SRC = Path(__file__).resolve().parent.parent / "src"
TIMINGS = ("seconds", "examples_per_s")


def _same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _history_without_timings(history: list[dict]) -> str:
    """The records as JSON text (so a NaN compares equal to itself), timings left out."""
    return json.dumps([{k: v for k, v in record.items() if k not in TIMINGS} for record in history], sort_keys=True)


def _staged_state(out: Path) -> dict:
    """The loop counters of the last checkpoint in ``out``'s staging directory."""
    return checkpoint.load(Staging(out).path / CHECKPOINT_FILE)["state"]


#: Validation four times an epoch (after steps 9, 18 and 28 of the tiny world's 37, and at the end) and an average
#: of the weights: the checkpoint holds the validations done, the best so far and the average.
QUARTERS_EMA = {"model": {"dropout": 0.2}, "train": {"validate_every": 0.25, "ema_decay": 0.9, "patience": 20}}


@pytest.mark.parametrize(("overrides", "every", "stop", "resumes_at", "log"), [
    # dropout draws from torch's RNG at every step: the checkpoint's RNG state must be restored
    ({"model": {"dropout": 0.2}}, 3, (1, 8), (1, 6), "tiny_log"),
    # PCGrad draws its projection orders from its own generator, kept in the balancer's state
    ({"loss": {"method": "pcgrad"}}, 2, (0, 5), (0, 4), "tiny_log"),
    # stopped after the first validation inside epoch 2, checkpointed after it; from the log on disk (streamed)
    (QUARTERS_EMA, 5, (1, 11), (1, 10), "tiny_log_path"),
    # a reweighted natural pass of the streamed path, feature dropout (torch's RNG) and decay of the id embeddings
    ({"sampling": {"mode": "reweight"}, "optim": {"embedding_updates": "lazy"},
      "model": {"embedding_dropout": {"user": 0.2, "content": 0.1}, "embedding_decay": {"user": 1e-3}}},
     3, (1, 8), (1, 6), "tiny_log_path"),
], ids=["dropout", "pcgrad", "validate-every-ema-streamed", "reweight-regularised-streamed"])
def test_a_run_stopped_inside_an_epoch_resumes_to_the_same_weights(tmp_path, fast_config, one_thread, request,
                                                                    overrides, every, stop, resumes_at, log):
    log = request.getfixturevalue(log)
    config = merge(fast_config, overrides)
    uninterrupted = train(log, tmp_path / "full", config)
    checkpointed = merge(config, {"train": {"checkpoint_every_steps": every}})
    with pytest.raises(KeyboardInterrupt):
        train(log, tmp_path / "run", checkpointed, hooks=StopAt(*stop))
    state = _staged_state(tmp_path / "run")
    assert (state["epoch"], state["step"]) == resumes_at  # the steps after the last checkpoint are lost
    assert state["seen"] == resumes_at[1] * config.train.batch_size and state["loss_sum"] > 0
    resumed = train(log, tmp_path / "run", checkpointed, resume=True)
    assert _same_weights(uninterrupted.model.state_dict(), resumed.model.state_dict())
    assert _same_weights(uninterrupted.model.state_dict(), load_model(tmp_path / "run").model.state_dict())
    assert _history_without_timings(resumed.record.history) == _history_without_timings(uninterrupted.record.history)
    assert (resumed.record.best_epoch, resumed.record.best_step) == (uninterrupted.record.best_epoch,
                                                                      uninterrupted.record.best_step)


@pytest.mark.parametrize("train", [{"checkpoint_every_steps": 0}, {"checkpoint_every_minutes": 0},
                                   {"checkpoint_every_minutes": -1.5}, {"checkpoint_every_steps": 2.5}])
def test_checkpoint_limits_must_be_positive(fast_config, train):
    with pytest.raises(ConfigError, match="checkpoint_every"):
        merge(fast_config, {"train": train})


def test_the_checkpoint_frequency_is_not_part_of_the_fingerprint(fast_config):
    # it never changes the weights, so --resume may change it and finished runs keep their fingerprint
    often = merge(fast_config, {"train": {"checkpoint_every_steps": 7, "checkpoint_every_minutes": 2.5}})
    assert training_part(often) == training_part(fast_config)
    assert "checkpoint_every_steps" not in training_part(often)["train"]
    span = DataSpan(100, 10, ("2026-01-01", "2026-01-10"), ("2026-01-10", "2026-01-12"))
    assert fingerprint(often, span) == fingerprint(fast_config, span)


# ------------------------------------------------------------------------------------------------
# SIGKILL in the middle of a checkpoint write, then a resume in a new process
# ------------------------------------------------------------------------------------------------

#: Trains in a fresh process. "pause": torch.save of the checkpoint at (epoch, step) PAUSE writes
#: half the file to its temporary name, says so in READY and sleeps, for the test to SIGKILL it;
#: "resume": continues from the staging directory.
_SCRIPT = """
import json, os, sys, time
from pathlib import Path
import torch
torch.set_num_threads(1)
from unitarget.config import config_from_mapping
from unitarget.pipeline import train

log, out, config_file, mode, ready = sys.argv[1:6]
config = config_from_mapping(json.loads(Path(config_file).read_text()), config_file)
PAUSE = (1, 6)
real_save = torch.save

def save_then_stall(payload, tmp):
    real_save(payload, tmp)
    state = payload.get("state") if isinstance(payload, dict) else None
    if mode == "pause" and state is not None and (state["epoch"], state["step"]) == PAUSE:
        os.truncate(tmp, os.path.getsize(tmp) // 2)  # a write cut in the middle
        Path(ready).write_text(str(tmp))
        time.sleep(300)  # the test kills the process here, before os.replace

torch.save = save_then_stall
train(log, out, config, resume=mode == "resume")
"""


def _start(log: Path, out: Path, config_file: Path, mode: str, ready: Path) -> subprocess.Popen:
    """The script in a fresh interpreter; its stderr goes to a file (a pipe nobody reads could fill and block it)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-c", _SCRIPT, str(log), str(out), str(config_file), mode, str(ready)]
    with open(config_file.with_name(f"{mode}.stderr"), "wb") as stderr:
        return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=stderr)


def _stderr(config_file: Path, mode: str) -> str:
    return config_file.with_name(f"{mode}.stderr").read_text(errors="replace")[-3000:]


def test_a_kill_in_the_middle_of_a_checkpoint_write_keeps_the_previous_one(tiny_log_path, tmp_path, fast_config,
                                                                            one_thread):
    config = merge(fast_config, {"model": {"dropout": 0.2}, "train": {"checkpoint_every_steps": 3}})
    config_file, ready, out = tmp_path / "config.json", tmp_path / "ready", tmp_path / "run"
    config_file.write_text(json.dumps(config.to_json_dict()))
    uninterrupted = train(tiny_log_path, tmp_path / "full", merge(config, {"train": {"checkpoint_every_steps": None}}))

    process = _start(tiny_log_path, out, config_file, "pause", ready)
    try:
        deadline = time.monotonic() + 180
        while not (ready.is_file() and ready.read_text()):
            assert process.poll() is None, f"training ended before the paused write: {_stderr(config_file, 'pause')}"
            assert time.monotonic() < deadline, "the training process never reached the paused checkpoint write"
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
    half_written = Path(ready.read_text())
    assert half_written.is_file() and half_written.parent == Staging(out).path  # the kill came mid-write
    state = _staged_state(out)  # the previous checkpoint, intact and loadable
    assert (state["epoch"], state["step"]) == (1, 3)

    resumed = _start(tiny_log_path, out, config_file, "resume", ready)
    try:
        assert resumed.wait(timeout=180) == 0, _stderr(config_file, "resume")
    finally:
        if resumed.poll() is None:
            resumed.kill()
            resumed.wait(timeout=30)
    run = load_model(out)
    assert _same_weights(uninterrupted.model.state_dict(), run.model.state_dict())
    assert _history_without_timings(run.record.history) == _history_without_timings(uninterrupted.record.history)
    assert not any(".tmp" in p.name for p in out.iterdir())  # the cut write was cleared, not published


def test_remove_temporary_files_takes_only_what_atomic_output_leaves(tmp_path):
    for name in (".checkpoint.x1y2.tmp.pt", ".fingerprint.abc.tmp.json", "checkpoint.pt", "model.pt", ".keep"):
        (tmp_path / name).write_text("x")
    removed = remove_temporary_files(tmp_path)
    assert sorted(p.name for p in removed) == [".checkpoint.x1y2.tmp.pt", ".fingerprint.abc.tmp.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".keep", "checkpoint.pt", "model.pt"]


# ------------------------------------------------------------------------------------------------
# The triggers
# ------------------------------------------------------------------------------------------------


class _Clock:
    """A monotonic clock that moves only when a test moves ``now``: no test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class _StepsTake(SilentHooks):
    """Hooks: each optimiser step takes ``seconds`` on ``clock``."""

    def __init__(self, clock: _Clock, seconds: float) -> None:
        self.clock, self.seconds = clock, seconds

    def on_step(self, epoch: int, step: int, steps: int, loss: float, examples_per_s: float) -> None:
        self.clock.now += self.seconds


def _record_checkpoints(monkeypatch) -> list[tuple[int, int]]:
    """(epoch, step) of every checkpoint ``Staging`` writes from now on."""
    written: list[tuple[int, int]] = []
    save = Staging.save_checkpoint

    def recording(self, payload):
        written.append((payload["state"]["epoch"], payload["state"]["step"]))
        save(self, payload)

    monkeypatch.setattr(Staging, "save_checkpoint", recording)
    return written


def test_the_time_trigger_writes_checkpoints_inside_epochs(tiny_log, tmp_path, fast_config, one_thread, monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(trigger, "monotonic", clock)
    written = _record_checkpoints(monkeypatch)
    plain = train(tiny_log, tmp_path / "plain", fast_config, hooks=_StepsTake(clock, 25.0))
    epochs = len(plain.record.history)
    assert written == [(e, 0) for e in range(1, epochs + 1)]  # the default: at epoch ends only

    written.clear()
    timed = merge(fast_config, {"train": {"checkpoint_every_minutes": 1.0}})
    trained = train(tiny_log, tmp_path / "timed", timed, hooks=_StepsTake(clock, 25.0))
    inside = [(e, s) for e, s in written if s > 0]
    assert inside, "no checkpoint inside an epoch"
    # The hook puts each step's 25 s on the clock after the trigger has looked, so the checks see
    # 0, 25, 50, 75 s after an epoch-end checkpoint (the first inside the epoch comes after step 4),
    # then 25, 50, 75 s after each one inside it (every third step)
    for epoch in range(epochs):
        assert [s for e, s in inside if e == epoch][:3] == [4, 7, 10]
    assert [w for w in written if w[1] == 0] == [(e, 0) for e in range(1, epochs + 1)]
    assert _same_weights(plain.model.state_dict(), trained.model.state_dict())  # checkpoints change nothing


def test_the_step_and_time_limits_fire_whichever_comes_first(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(trigger, "monotonic", clock)
    both = CheckpointTrigger(every_steps=4, every_minutes=1.0)
    fired = []
    for step in range(1, 13):
        clock.now += 10.0 if step <= 8 else 40.0  # slow steps after the eighth
        if both.due():
            fired.append(step)
            both.restart()
    assert fired == [4, 8, 10, 12]  # by steps (4 steps in 40 s), by steps again, then by time (2 steps in 80 s)
    never = CheckpointTrigger(every_steps=None, every_minutes=None)
    assert not any(never.due() for _ in range(1_000))
