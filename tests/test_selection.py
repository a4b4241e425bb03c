"""Model selection inside epochs (``train.validate_every``) and the average of the weights (``train.ema_decay``):
where validations fall, patience counted in validations, the best weights taken from inside an epoch, the average
against one computed by hand, and the default configuration training exactly as before."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from tests.helpers import tiny_batch, tiny_layout
from unitarget.config import Config, merge
from unitarget.errors import ConfigError
from unitarget.pipeline import train
from unitarget.presets import apply_preset
from unitarget.runs import best_validation, epochs_trained
from unitarget.training.ema import WARMUP, WeightAverage
from unitarget.training.hooks import SilentHooks
from unitarget.training.loop import MemoryStore, fit
from unitarget.training.setup import build_setup
from unitarget.training.trigger import validation_steps

#: A model and batches small enough for fit to run in well under a second; 96 rows in batches of 8: 12 steps an epoch.
TINY = {"model": {"hidden": [8], "tower_hidden": [4], "embedding_dim": 4},
        "train": {"batch_size": 8, "max_epochs": 2, "patience": 50, "threads": 1}, "optim": {"warmup_steps": 1}}
STEPS = 12


class _Recorder(SilentHooks):
    """Keeps every validation record, and a copy of the live weights after every step."""

    def __init__(self, model: torch.nn.Module | None = None) -> None:
        self.records: list[dict] = []
        self.model, self.weights = model, []

    def on_step(self, epoch: int, step: int, steps: int, loss: float, examples_per_s: float) -> None:
        if self.model is not None:
            self.weights.append(copy.deepcopy(self.model.state_dict()))

    def on_validation(self, record: dict) -> None:
        self.records.append(record)


class _Scores:
    """A ``validate`` that returns the given scores in turn and keeps a copy of the weights it scored each time."""

    def __init__(self, scores: list[float]) -> None:
        self.scores, self.scored, self.models = list(scores), [], []

    def __call__(self, model) -> tuple[float, dict[str, float]]:
        self.scored.append(copy.deepcopy(model.state_dict()))
        self.models.append(model)
        score = self.scores[len(self.scored) - 1]
        return score, {"promotions_stream": score / 2}


def _fit(overrides: dict, validate, hooks_for=None):
    """``fit`` on the tiny world; ``hooks_for(model)`` builds the hooks. Returns (state, model, hooks)."""
    config = merge(merge(Config(), TINY), overrides)
    layout = tiny_layout()
    setup = build_setup(config, layout, tiny_batch(layout, [0, 1] * 48, seed=1))
    assert len(setup.batches) == STEPS
    hooks = (hooks_for or (lambda _: _Recorder()))(setup.model)
    state = fit(setup.model, setup.tasks, setup.batches, balancer=setup.balancer, validate=validate,
                train_config=config.train, optim_config=config.optim, store=MemoryStore(), hooks=hooks)
    return state, setup.model, hooks


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_validation_steps_inside_an_epoch():
    assert validation_steps(None, 37) == frozenset()
    assert validation_steps(1.0, 37) == frozenset()  # a whole epoch: its end only
    assert sorted(validation_steps(0.25, 40)) == [10, 20, 30]
    assert sorted(validation_steps(0.25, 37)) == [9, 18, 28]  # the steps nearest 9.25, 18.5 and 27.75
    assert sorted(validation_steps(0.1, 30)) == list(range(3, 30, 3))  # 0.1 * 3 is not 0.3 in floats: still 9
    assert sorted(validation_steps(0.3, 10)) == [3, 6, 9]
    assert sorted(validation_steps(5, 12)) == [5, 10]
    assert sorted(validation_steps(1, 4)) == [1, 2, 3]  # the integer 1: after every step
    assert validation_steps(0.5, 1) == frozenset() and validation_steps(20, 12) == frozenset()


@pytest.mark.parametrize(("every", "inside"), [(0.25, [3, 6, 9]), (5, [5, 10]), (None, [])])
def test_validations_fall_inside_epochs_and_at_their_ends(one_thread, every, inside):
    scores = _Scores([float(i) for i in range(20)])
    state, _, hooks = _fit({"train": {"validate_every": every}}, scores)
    per_epoch = [*inside, STEPS]
    assert [(r["epoch"], r["step"]) for r in hooks.records] == [(e, e * STEPS + s) for e in range(2) for s in per_epoch]
    assert [r["fraction"] for r in hooks.records] == [s / STEPS for s in per_epoch] * 2
    assert hooks.records == state.history and len(scores.scored) == len(state.history)
    first = hooks.records[0]
    assert first["valid_score"] == 0.0 and first["valid_promotions_stream"] == 0.0  # the score and each target's AP
    assert all(r["improved"] for r in hooks.records)  # rising scores
    assert (state.best_epoch, state.best_step) == (1, 2 * STEPS)


def test_train_loss_is_the_mean_since_the_previous_validation(one_thread):
    losses: list[float] = []

    class Losses(_Recorder):
        def on_step(self, epoch, step, steps, loss, examples_per_s):
            losses.append(loss)

    state, _, _ = _fit({"train": {"validate_every": 5, "max_epochs": 1}}, _Scores([0.0] * 3), lambda _: Losses())
    spans = [(0, 5), (5, 10), (10, 12)]
    for record, (start, stop) in zip(state.history, spans):
        assert record["train_loss"] == pytest.approx(sum(losses[start:stop]) / (stop - start), rel=1e-12)


def test_patience_counts_validations_and_stops_inside_an_epoch(one_thread):
    steps: list[tuple[int, int]] = []

    class Steps(_Recorder):
        def on_step(self, epoch, step, steps_, loss, examples_per_s):
            steps.append((epoch, step))

    falling = _Scores([1.0, 0.9, 0.8, 0.7, 0.6])
    state, _, hooks = _fit({"train": {"validate_every": 0.25, "patience": 2}}, falling, lambda _: Steps())
    assert [r["step"] for r in hooks.records] == [3, 6, 9]  # the best, then two without improvement: stop
    assert [r["improved"] for r in hooks.records] == [True, False, False]
    assert steps[-1] == (0, 9) and (state.epoch, state.step, state.stale) == (0, 9, 2)  # no step after it


def test_the_best_weights_can_come_from_inside_an_epoch(one_thread):
    scores = _Scores([0.1, 0.5, 0.3, 0.2, 0.4, 0.45, 0.2, 0.1])
    state, model, _ = _fit({"train": {"validate_every": 0.25}}, scores)
    assert (state.best_epoch, state.best_step, state.best_score) == (0, 6, 0.5)
    assert best_validation(state.history)["step"] == 6 and epochs_trained(state.history) == 2
    assert _same(model.state_dict(), scores.scored[1])  # the weights of the second validation, mid-epoch 1
    assert not _same(model.state_dict(), scores.scored[-1])


def test_the_average_is_the_one_computed_by_hand(one_thread):
    decay = 0.8
    scores = _Scores([float(i) for i in range(10)])
    state, model, hooks = _fit({"train": {"ema_decay": decay, "max_epochs": 1}}, scores, _Recorder)
    expected = {k: v.double() for k, v in hooks.weights[0].items()}  # the first update copies the weights
    for n, live in enumerate(hooks.weights[1:], start=1):
        d = min(decay, (1 + n) / (WARMUP + n))
        for key, value in live.items():
            floating = value.is_floating_point()
            expected[key] = d * expected[key] + (1 - d) * value.double() if floating else value.double()
    scored = scores.scored[-1]  # the end of the epoch: what validation scored, and the best (rising scores)
    assert scores.models[-1] is not model  # validation scores the average, not the live weights
    assert expected.keys() == scored.keys() and any("running_mean" in k for k in scored)  # batch norm buffers too
    for key, value in scored.items():
        assert torch.allclose(value.double(), expected[key], rtol=1e-5, atol=1e-6), key
    assert not _same(scored, hooks.weights[-1])
    assert _same(model.state_dict(), scored)  # the published weights are the average's


@pytest.mark.parametrize("overrides", [{"loss": {"method": "gradnorm"}}, {"loss": {"method": "pcgrad"}},
                                       {"optim": {"embedding_updates": "lazy"}, "loss": {"method": "uncertainty"}}],
                         ids=["gradnorm", "pcgrad", "lazy"])
def test_validation_inside_epochs_and_the_average_train_with_every_balancer(one_thread, overrides):
    scores = _Scores([float(i) for i in range(10)])
    state, model, _ = _fit({**overrides, "train": {"validate_every": 0.5, "ema_decay": 0.9}}, scores)
    assert [r["step"] for r in state.history] == [6, 12, 18, 24]
    assert _same(model.state_dict(), scores.scored[-1]) and scores.models[-1] is not model
    assert all(bool(torch.isfinite(v).all()) for v in model.state_dict().values() if v.is_floating_point())


def test_the_warm_up_keeps_the_initial_weights_from_dominating():
    layer = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(layer.weight)
    average = WeightAverage(layer, 0.999)
    average.update(layer)  # the first copies: 0
    with torch.no_grad():
        layer.weight.fill_(1.0)
    for _ in range(100):
        average.update(layer)
    # without the warm-up the average would be 1 - 0.999^100 = 0.095: the initial 0 would weigh 0.9; with it, it
    # weighs the product of the decays
    kept = 1.0
    for n in range(1, 101):
        kept *= (1 + n) / (WARMUP + n)
    assert average.model.weight.item() == pytest.approx(1 - kept, rel=1e-5) and 1 - kept > 0.99


def test_the_default_trains_as_validate_every_none_and_mid_epoch_validation_changes_no_step(tiny_log, tmp_path,
                                                                                         fast_config, one_thread):
    config = merge(fast_config, {"model": {"dropout": 0.2}})  # validation must not disturb the dropout RNG either

    def run(overrides: dict, name: str):
        trained = merge(config, overrides)
        hooks = _Recorder()
        run = train(tiny_log, tmp_path / name, trained, hooks=hooks)
        return run, hooks

    default, _ = run({}, "default")
    explicit, _ = run({"train": {"validate_every": None}}, "none")
    whole, _ = run({"train": {"validate_every": 1.0}}, "whole")
    for other in (explicit, whole):
        assert _same(default.model.state_dict(), other.model.state_dict())
        assert [r["valid_score"] for r in other.record.history] == [r["valid_score"] for r in default.record.history]
    assert default.record.best_step == best_validation(default.record.history)["step"]
    assert len(default.record.history) == epochs_trained(default.record.history) == 2

    # Validations inside the epochs change where the best is chosen, not the steps: the last epoch-end validation
    # scores the same weights with or without them
    quarters, hooks = run({"train": {"validate_every": 0.25, "patience": 20}}, "quarters")
    ends = [r for r in quarters.record.history if r["fraction"] == 1.0]
    assert [r["valid_score"] for r in ends] == [r["valid_score"] for r in default.record.history]
    assert len(quarters.record.history) == 8 and hooks.records == quarters.record.history


@pytest.mark.parametrize("train", [{"validate_every": 0}, {"validate_every": 1.5}, {"validate_every": 0.0},
                                   {"validate_every": True}, {"validate_every": "0.5"}, {"ema_decay": 1.0},
                                   {"ema_decay": -0.1}])
def test_bad_settings_are_refused_naming_them(train):
    with pytest.raises(ConfigError, match=f"train.{next(iter(train))}"):
        merge(Config(), {"train": train})


def test_an_ema_decay_of_zero_is_accepted_and_is_what_the_paper_preset_sets():
    """0, not None, turns the average off: a TOML file (test_toml_writer) has no None to write."""
    assert merge(Config(), {"train": {"ema_decay": 0}}).train.ema_decay == 0
    assert apply_preset(Config(), "paper").train.ema_decay == 0


def test_selection_on_every_head_by_geometric_mean_scores_each_validation_so(tiny_log, tmp_path, fast_config,
                                                                            one_thread):
    config = merge(fast_config, {"evaluation": {"selection_heads": "all", "selection_mean": "geometric"}})
    run = train(tiny_log, tmp_path / "run", config)
    for row in run.record.history:
        aps = [value for key, value in row.items() if key.startswith("valid_ap_")]
        assert len(aps) == len(config.tasks)
        assert row["valid_score"] == pytest.approx(math.exp(sum(map(math.log, aps)) / len(aps)))
        assert row["valid_score"] < sum(aps) / len(aps)  # unequal APs: the geometric mean is below the mean
