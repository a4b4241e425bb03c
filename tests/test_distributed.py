"""Data-parallel training (training/distributed.py): ranks end with the same weights, N × B/N is 1 × B without batch
norm and dropout, rank 0's checkpoint resumes on every rank, a killed rank ends the job, and what DDP cannot do is
refused. Ranks are spawned processes on the gloo backend (2 ranks, one thread each)."""

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

from tests.conftest import FAST
from tests.ddp_workers import Job, run_hang, run_ranks
from tests.helpers import tiny_batch, tiny_layout
from unitarget.config import Config, merge
from unitarget.pipeline import load_log, load_model, train
from unitarget.runs import CHECKPOINT_FILE, Staging, epochs_trained, training_part
from unitarget.training.balancing import GradNorm, PCGrad
from unitarget.training.batches import WeightedBatches, source_weights
from unitarget.training.tasks import TaskSet
from unitarget.training.distributed import DistributedContext, DistributedError, RankSlice, check_supported, from_env

SRC = Path(__file__).resolve().parent.parent / "src"
#: 2 × B/2 against 1 × B, no batch norm and no dropout: the largest parameter difference allowed after the tiny
#: world's 2 epochs (74 steps). Measured: about 1e-7 (float rounding of the sums in another order; see the test).
EXACT_BOUND = 1e-5
#: With batch norm (each rank normalises over its own B/2 rows) and dropout (masks per rank) the runs differ: the
#: validation AP of 2 ranks is asserted within this relative margin of 1 process's, on the tiny world.
BATCH_NORM_AP_MARGIN = 0.15


#: The fast configuration with batch norm (the default) and dropout, checkpointed every 3 steps (weights unchanged).
BN_DROPOUT = merge(merge(Config(), FAST), {"model": {"dropout": 0.1}, "train": {"checkpoint_every_steps": 3}})


class _Stream:
    """Two global batches per epoch, each its rows in order (a stand-in for any BatchStream)."""

    def __init__(self, batch, size: int) -> None:
        self.batch, self.size = batch, size

    def __len__(self) -> int:
        return len(self.batch) // self.size

    def epoch(self, epoch: int, start: int = 0):
        for b in range(start, len(self)):
            yield self.batch.take(torch.arange(b * self.size, (b + 1) * self.size))


def test_a_rank_trains_the_strided_share_of_each_global_batch():
    layout = tiny_layout()
    batch = tiny_batch(layout, [0, 0, 0, 1, 1, 1, 1, 1], seed=3)
    stream = _Stream(batch, 4)
    shares = [list(RankSlice(stream, rank, 2).epoch(0)) for rank in range(2)]
    assert all(len(RankSlice(stream, rank, 2)) == 2 for rank in range(2))  # global steps: the schedule's count
    for b in range(2):
        rows = torch.arange(b * 4, (b + 1) * 4)
        for rank in range(2):
            assert torch.equal(shares[rank][b].features.ids, batch.features.ids[rows[rank::2]])
            assert torch.equal(shares[rank][b].targets.source, batch.targets.source[rows[rank::2]])
    assert [len(s) for s in RankSlice(stream, 1, 2).epoch(0, start=1)] == [2]  # a resumed epoch skips the done ones
    with pytest.raises(DistributedError, match="does not split over 3 ranks"):
        next(RankSlice(stream, 0, 3).epoch(0))


def test_a_ranks_share_of_a_reweighted_batch_keeps_its_rows_weights_and_the_ranks_mean_loss_is_the_batchs():
    config = merge(Config(), {"sampling": {"mode": "reweight"}})
    tasks = TaskSet(config.tasks, config.sources)
    batch = tiny_batch(tiny_layout(), [0, 0, 0, 0, 0, 0, 1, 1], n_labels=len(tasks.labels), seed=3)
    stream = WeightedBatches(_Stream(batch, 8), source_weights(config, {0: 6, 1: 2}))
    (whole,) = stream.epoch(0)
    shares = [next(RankSlice(stream, rank, 2).epoch(0)) for rank in range(2)]
    for rank, share in enumerate(shares):
        assert torch.equal(share.targets.weight, whole.targets.weight[rank::2])
    logits = torch.randn(8, len(tasks), generator=torch.Generator().manual_seed(0))
    per_rank = [tasks.losses(logits[rank::2], share.targets) for rank, share in enumerate(shares)]
    assert torch.allclose((per_rank[0] + per_rank[1]) / 2, tasks.losses(logits, whole.targets), atol=1e-6)


def test_what_data_parallel_training_cannot_do_is_refused(fast_config):
    with pytest.raises(DistributedError, match="batch_size = 512 does not split over 3 ranks"):
        check_supported(fast_config, 3)
    check_supported(fast_config, 4)
    for method in ("gradnorm", "pcgrad"):
        with pytest.raises(DistributedError, match=f"loss.method = '{method}' is not supported"):
            check_supported(merge(fast_config, {"loss": {"method": method}}), 2)
    # from_env checks before it starts a process group; without torchrun's variables it is a single process
    with pytest.raises(DistributedError, match="does not split"):
        from_env(fast_config, {"WORLD_SIZE": "3", "RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"})
    single = from_env(fast_config, {})
    assert (single.rank, single.world, single.is_main, single.parallel) == (0, 1, True, False)
    # fit refuses the balancers themselves too (a caller that built its own context), before any collective
    weights = torch.ones(2)
    context = DistributedContext(rank=0, world=2)
    for balancer in (GradNorm(weights), PCGrad(weights)):
        with pytest.raises(DistributedError, match="not supported in data-parallel training"):
            context.replica(torch.nn.Linear(2, 2), balancer, 0)


def test_the_timeout_is_not_part_of_the_fingerprint(fast_config):
    assert training_part(merge(fast_config, {"train": {"ddp_timeout_minutes": 5}})) == training_part(fast_config)


NO_EMBEDDING_DROPOUT = {"user": 0.0, "content": 0.0, "creative": 0.0}
#: 2 × B/2 against 1 × B without batch norm, dropout, embedding dropout (random per row, so per rank) and the
#: co-listening objective (its negatives are the rank's own rows, models.colistening): dense embedding updates with static loss weights, and lazy
#: (row-sparse gradients, all-reduced as sparse tensors) with uncertainty weighting (its own parameters' gradients
#: averaged over the ranks by the loop).
EXACT = {name: merge(merge(Config(), FAST), {"model": {"batch_norm": False, "dropout": 0.0, "embedding_dropout": NO_EMBEDDING_DROPOUT,
                                                       "attention": {"history_loss": 0.0}},
                                             "optim": {"embedding_updates": updates}, "loss": {"method": method}})
         for name, updates, method in (("dense", "dense", "static"), ("lazy-uncertainty", "lazy", "uncertainty"))}
#: Validation at each half epoch and an average of the weights (on rank 0): every rank validates at the same steps
#: and ends with the average rank 0 published.
EXACT["dense-halves-ema"] = merge(EXACT["dense"], {"train": {"validate_every": 0.5, "ema_decay": 0.9}})
STOP_AT, STOPPED_AT = (1, 8), (1, 6)  # Ctrl-C after step 8 of epoch 2; the last checkpoint is after its step 6
TIMINGS = ("seconds", "examples_per_s")


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _without_timings(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in record.items() if k not in TIMINGS} for record in history]


@pytest.fixture(scope="module")
def spawned(tiny_log_path, tmp_path_factory):
    """One spawn of 2 ranks (the imports paid once) that trains, one after the other: ``EXACT``'s two
    configurations, ``BN_DROPOUT``, and ``BN_DROPOUT`` again stopped at ``STOP_AT`` (left to resume). Returns the
    root folder and each finished job's per-rank results."""
    root = tmp_path_factory.mktemp("ddp")
    jobs = [Job(name, str(tiny_log_path), str(root / name), config.to_json_dict()) for name, config in EXACT.items()]
    jobs.append(Job("bn", str(tiny_log_path), str(root / "bn"), BN_DROPOUT.to_json_dict()))
    jobs.append(Job("stopped", str(tiny_log_path), str(root / "stopped"), BN_DROPOUT.to_json_dict(), stop_at=STOP_AT))
    return root, run_ranks(2, jobs, root / "results")


@pytest.mark.parametrize("name", list(EXACT))
def test_two_ranks_of_half_the_batch_reach_the_weights_of_one_process(spawned, tiny_log_path, tmp_path,
                                                                      one_thread, name):
    ranks = spawned[1][name]
    single = train(tiny_log_path, tmp_path / "single", EXACT[name])
    expected = single.model.state_dict()
    assert _same(ranks[1]["weights"], ranks[0]["weights"])  # the ranks agree exactly
    assert _without_timings(ranks[1]["history"]) == _without_timings(ranks[0]["history"])  # validated together
    assert [r["step"] for r in ranks[0]["history"]] == [r["step"] for r in single.record.history]
    difference = max((ranks[0]["weights"][k].double() - expected[k].double()).abs().max().item() for k in expected)
    print(f"\n{name}: max |2 x B/2 - 1 x B| over the parameters after {epochs_trained(single.record.history)} epochs: "
          f"{difference:.3g}")
    assert difference <= EXACT_BOUND
    for two, one in zip(ranks[0]["history"], single.record.history):  # the logged loss is the global batch's
        assert two["train_loss"] == pytest.approx(one["train_loss"], abs=1e-6)
        assert two["step"] == one["step"]  # global optimiser steps, whatever the ranks
        assert two["valid_score"] == pytest.approx(one["valid_score"], abs=1e-4)


def test_ranks_end_with_identical_weights_and_publish_an_ordinary_run(spawned, tiny_log):
    root, results = spawned
    ranks = results["bn"]
    first = ranks[0]["weights"]
    assert _same(ranks[1]["weights"], first)  # batch-norm buffers too: rank 0's
    assert _without_timings(ranks[1]["history"]) == _without_timings(ranks[0]["history"])  # rank 0's validation
    run = load_model(root / "bn")  # what predict, evaluate and export read: the same kind of run as one process's
    assert _same(run.model.state_dict(), first)
    assert _without_timings(run.record.history) == _without_timings(ranks[0]["history"])
    assert run.predict(load_log(tiny_log.slice(0, 50), run.config, require_labels=False)).num_rows == 50
    assert not Staging(root / "bn").path.exists()


def test_with_batch_norm_two_ranks_stay_close_to_one_process(spawned, tiny_log_path, tmp_path, one_thread):
    ranks = spawned[1]["bn"]
    single = train(tiny_log_path, tmp_path / "single", BN_DROPOUT)
    two, one = ranks[0]["history"][-1]["valid_score"], single.record.history[-1]["valid_score"]
    print(f"\nbatch norm + dropout: validation AP 2 ranks {two:.4f}, 1 process {one:.4f}")
    assert abs(two - one) <= BATCH_NORM_AP_MARGIN * one


def test_two_ranks_resume_from_rank_0s_checkpoint_to_the_same_weights(spawned, tiny_log_path, tmp_path):
    root, results = spawned
    out = root / "stopped"
    state = torch.load(Staging(out).path / CHECKPOINT_FILE, weights_only=False)["state"]
    assert (state["epoch"], state["step"]) == STOPPED_AT  # rank 0's last checkpoint, inside the second epoch
    resumed = run_ranks(2, [Job("resumed", str(tiny_log_path), str(out), BN_DROPOUT.to_json_dict(), resume=True)],
                        tmp_path)["resumed"]
    expected = results["bn"][0]
    for rank in resumed:  # dropout masks are seeded per (step, rank): the resumed ranks draw the same ones
        assert _same(rank["weights"], expected["weights"])
    assert _without_timings(resumed[0]["history"]) == _without_timings(expected["history"])
    assert _same(load_model(out).model.state_dict(), expected["weights"])


def test_a_rank_left_waiting_gives_up_after_the_process_group_timeout():
    # what torchrun's agent does not see: a rank that is alive but never joins the collective (a hang)
    started = time.monotonic()
    codes = run_hang(timeout_minutes=0.05, hang_s=8)  # a 3-second timeout
    assert codes[0] == 3  # rank 0's broadcast raised: the timeout applies to the collectives
    assert time.monotonic() - started < 60


# ------------------------------------------------------------------------------------------------
# Through torchrun: a killed worker ends the job; `train --nproc`
# ------------------------------------------------------------------------------------------------


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _rank_of(pid: int) -> int | None:
    try:
        variables = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    ranks = [v for v in variables if v.startswith(b"RANK=")]
    return int(ranks[0][5:]) if ranks else None


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds the workers through /proc")
def test_a_killed_rank_ends_the_job_non_zero_within_a_minute(tiny_log_path, tmp_path):
    # long enough to train for minutes: many small batches, many epochs, no early stop
    config = merge(merge(Config(), FAST), {"train": {"batch_size": 16, "max_epochs": 50, "patience": 50,
                                                    "checkpoint_every_steps": 20}})
    config_file, out = tmp_path / "config.json", tmp_path / "run"
    config_file.write_text(json.dumps(config.to_json_dict()))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m",
               "unitarget", "train", "--data", str(tiny_log_path), "--out", str(out), "--config", str(config_file)]
    with open(tmp_path / "stderr", "wb") as stderr:
        launcher = subprocess.Popen(command, env=_env(), stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        deadline = time.monotonic() + 120
        while not (Staging(out).path / CHECKPOINT_FILE).is_file():  # rank 0 has trained 20 steps
            assert launcher.poll() is None, (tmp_path / "stderr").read_text()[-3000:]
            assert time.monotonic() < deadline, "training never started"
            time.sleep(0.1)
        workers = {_rank_of(pid): pid for pid in _children(launcher.pid)}
        os.kill(workers[1], signal.SIGKILL)
        killed = time.monotonic()
        code = launcher.wait(timeout=60)
        print(f"\nthe launcher exited {code} {time.monotonic() - killed:.1f} s after rank 1 was killed")
        assert code != 0
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait(timeout=30)
    assert not out.exists()  # nothing was published


def test_train_nproc_launches_torchrun_and_publishes_one_run(tiny_log_path, tmp_path):
    config_file, out = tmp_path / "fast.json", tmp_path / "run"
    config_file.write_text(json.dumps(merge(merge(Config(), FAST), {"train": {"max_epochs": 1}}).to_json_dict()))
    command = [sys.executable, "-m", "unitarget", "train", "--nproc", "2", "--data", str(tiny_log_path),
               "--out", str(out), "--config", str(config_file)]
    done = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "on 2 ranks" in done.stderr
    run = load_model(out)
    assert run.record is not None and len(run.record.history) == 1
    # a batch that does not split is refused before any process starts
    refused = subprocess.run([*command[:5], "3", *command[6:]], env=_env(), capture_output=True, text=True,
                             timeout=120)
    assert refused.returncode == 2 and "does not split over 3 ranks" in refused.stderr
