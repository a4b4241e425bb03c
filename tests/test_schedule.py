"""Learning-rate schedule: warm-up, cosine decay, and a warm-up that fits short runs."""

import torch

from unitarget.config import OptimConfig
from unitarget.training.schedule import make_optimizer, make_scheduler


def _rates(config: OptimConfig, total_steps: int) -> list[float]:
    optimizer = make_optimizer([torch.nn.Linear(1, 1)], config)
    scheduler = make_scheduler(optimizer, config, total_steps)
    rates = []
    for _ in range(total_steps):
        rates.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    return rates


def test_warm_up_then_cosine_decay_to_the_floor():
    config = OptimConfig(lr=1.0, warmup_steps=10, min_lr_ratio=0.05)
    rates = _rates(config, 1_000)
    assert rates[0] == 0.1 and rates[9] == 1.0  # linear over 10 steps
    assert all(a >= b for a, b in zip(rates[10:], rates[11:]))  # then never rises
    assert abs(rates[-1] - 0.05) < 1e-3


def test_a_short_run_warms_up_over_at_most_a_third_of_its_steps():
    rates = _rates(OptimConfig(lr=1.0, warmup_steps=200), 72)  # a fine-tune on a small log
    assert rates[23] == 1.0 and max(rates) == 1.0  # full rate after 24 steps, not at the end
    assert rates[-1] < 0.1
    long_run = _rates(OptimConfig(lr=1.0, warmup_steps=200), 660)
    assert long_run[198] < 1.0 == long_run[199]  # a run of the default world keeps all 200 steps


def test_id_lr_scale_steps_the_id_tables_at_a_multiple_of_the_rate_through_the_schedule():
    """With id_lr_scale = 10 every nn.Embedding weight is in a group at 10x the rate, the rest at the rate, and the
    warm-up and decay scale both; at 1 there is one group (the optimiser of a run without the setting)."""
    model = torch.nn.ModuleDict({"ids": torch.nn.Embedding(5, 3), "dense": torch.nn.Linear(3, 1)})
    config = OptimConfig(lr=0.01, id_lr_scale=10.0, warmup_steps=2)
    optimizer = make_optimizer([model], config)
    scheduler = make_scheduler(optimizer, config, 20)
    dense, ids = optimizer.param_groups
    assert ids["params"] == [model["ids"].weight] and len(dense["params"]) == 2
    rates = []
    for _ in range(5):
        rates.append((dense["lr"], ids["lr"]))
        optimizer.step()
        scheduler.step()
    assert rates[0][0] < rates[1][0]  # warming up
    assert all(abs(i - 10 * d) < 1e-12 for d, i in rates)
    assert len(make_optimizer([model], OptimConfig(lr=0.01)).param_groups) == 1
