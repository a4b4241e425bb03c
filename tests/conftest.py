"""Shared fixtures: one tiny synthetic world per test session (seconds to make)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
import torch

from unitarget.config import Config, merge
from unitarget.io import read_log
from unitarget.synth import WorldParams, write_synthetic_dataset

TINY_WORLD = WorldParams(n_users=600, n_shows=120, n_impressions=24_000, n_days=21, seed=5)


@pytest.fixture(scope="session")
def tiny_log_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_dataset(tmp_path_factory.mktemp("world"), TINY_WORLD)


@pytest.fixture(scope="session")
def tiny_log(tiny_log_path: Path) -> pa.Table:
    return read_log(tiny_log_path)


#: Small model and batches so a training run takes about a second.
FAST = {
    "model": {"hidden": [32, 16], "tower_hidden": [8], "embedding_dim": 8},
    # validation at epoch ends (not the default's 4 times an epoch): the tests count epochs and checkpoints
    "train": {"batch_size": 512, "max_epochs": 2, "patience": 2, "valid_days": 4, "threads": 1, "validate_every": 1.0},
    "optim": {"warmup_steps": 5},
}


@pytest.fixture
def fast_config() -> Config:
    """Small model and batches so a training run takes about a second."""
    return merge(Config(), FAST)


@pytest.fixture
def one_thread():
    """Tiny tensors: one intra-op thread is faster, and far faster on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
