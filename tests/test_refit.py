"""train.refit: the published model is trained again on every row, the validation days included, for as long as
the model selected on them had trained."""

import numpy as np
import pytest
import torch

from unitarget.config import merge
from unitarget.data.cache import MANIFEST_FILE
from unitarget.data.vocabulary import OOV
from unitarget.errors import UnitargetError
from unitarget.models.average import first_member, members
from unitarget.pipeline import head_aps, same_training_days, split_training_log, train
from unitarget.training.batches import ValidationRows
from unitarget.training.hooks import SilentHooks
from unitarget.training.loop import MemoryStore, fit
from unitarget.training.setup import build_setup, encoder_for


def _only_in_validation(log, config, column="creative_id"):
    """Ids of ``column`` that appear in the validation days often enough for a vocabulary (``features.min_count``)
    and never before them."""
    split = split_training_log(log, config)
    before = set(split.older.column(column).to_pylist())
    ids, counts = np.unique([v for v in split.newest.column(column).to_pylist() if v is not None], return_counts=True)
    return sorted(str(v) for v, n in zip(ids, counts) if n >= config.features.min_count and v not in before)


def test_ids_first_seen_in_the_validation_days_get_their_own_rows(tiny_log, tmp_path, fast_config):
    new = _only_in_validation(tiny_log, fast_config)
    assert new, "the tiny world launches creatives in its last days"
    selected = train(tiny_log, tmp_path / "selected", merge(fast_config, {"train": {"refit": False}}))
    refit = train(tiny_log, tmp_path / "refit", fast_config)
    assert (selected.encoder.vocabularies_["creative_id"].lookup(new) == OOV).all()
    rows = refit.encoder.vocabularies_["creative_id"].lookup(new)
    assert (rows != OOV).all()
    # and their rows trained: each id's one-hot weights of the refit model's wide part moved from their zero start
    wide = first_member(refit.model).wide.table.weight.detach()[refit.encoder.layout_.offsets["creative_id"] + torch.as_tensor(rows)]
    assert (wide.abs().sum(1) > 0).all()


def test_the_record_keeps_the_selected_models_validation_figures(tiny_log, tmp_path, fast_config):
    selected = train(tiny_log, tmp_path / "selected", merge(fast_config, {"train": {"refit": False}}))
    refit = train(tiny_log, tmp_path / "refit", fast_config)
    timings = ("seconds", "examples_per_s")
    untimed = [[{k: v for k, v in row.items() if k not in timings} for row in r.record.history] for r in (refit, selected)]
    assert untimed[0] == untimed[1]  # selection is the same training
    assert refit.record.best_valid_score == selected.record.best_valid_score
    valid = ValidationRows.of_batch(selected.encode(split_training_log(tiny_log, fast_config).newest))
    assert refit.record.refit["selected_valid_ap"] == pytest.approx(
        head_aps(selected, valid, selected.evaluation_targets()))
    rows = split_training_log(tiny_log, fast_config)
    assert refit.record.refit["rows"] == rows.older.num_rows + rows.newest.num_rows
    assert selected.record.refit is None
    with pytest.raises(UnitargetError, match="was refit on its validation days and the baseline was not"):
        same_training_days(refit, selected)  # a baseline that did not see the newest days is no fair comparison
    same_training_days(refit, refit)
    assert not all(torch.equal(a, b) for a, b in zip(refit.model.state_dict().values(),
                                                     selected.model.state_dict().values()))


class _Steps(SilentHooks):
    def __init__(self) -> None:
        self.steps, self.refits, self.per_epoch = [], [], []

    def on_step(self, epoch, step, steps, loss, examples_per_s) -> None:
        self.steps.append((epoch, step))
        self.per_epoch.append(steps)

    def on_refit(self, rows, steps) -> None:
        self.refits.append((rows, steps))


def test_fit_with_a_step_budget_trains_exactly_that_many_steps_across_epochs(tiny_log, fast_config, one_thread):
    encoder = encoder_for(fast_config).fit(tiny_log)
    rows = encoder.transform(tiny_log)
    setup = build_setup(fast_config, encoder.layout_, rows)
    per_epoch = len(setup.batches)
    hooks = _Steps()
    fit(setup.model, setup.tasks, setup.batches, balancer=setup.balancer, validate=None,
        train_config=fast_config.train, optim_config=fast_config.optim, store=MemoryStore(), hooks=hooks,
        steps=per_epoch + 3)
    assert len(hooks.steps) == per_epoch + 3
    assert hooks.steps[-1] == (1, 3)
    with pytest.raises(ValueError, match="one of the two"):
        fit(setup.model, setup.tasks, setup.batches, balancer=setup.balancer, validate=None,
            train_config=fast_config.train, optim_config=fast_config.optim, store=MemoryStore())


def test_hooks_hear_of_the_refit_before_its_steps(tiny_log, tmp_path, fast_config):
    hooks = _Steps()
    trained = train(tiny_log, tmp_path / "run", fast_config, hooks=hooks)
    (rows, steps), = hooks.refits
    assert (rows, steps) == (trained.record.refit["rows"], trained.record.refit["steps"])
    assert len(hooks.steps) >= steps


def test_a_log_on_disk_refits_through_a_cache_of_every_row(tiny_log_path, tiny_log, tmp_path, fast_config):
    cache = tmp_path / "cache"
    on_disk = train(tiny_log_path, tmp_path / "disk", fast_config, cache=cache)
    in_memory = train(tiny_log, tmp_path / "memory", fast_config)
    caches = sorted(p.name for p in cache.iterdir())
    assert len(caches) == 2 and "refit" in caches  # the selection's cache and the refit's
    assert len(list((cache / "refit").iterdir())) == 1
    new = _only_in_validation(tiny_log, fast_config)
    for trained in (on_disk, in_memory):
        assert (trained.encoder.vocabularies_["creative_id"].lookup(new) != OOV).all()
    assert on_disk.record.refit["rows"] == in_memory.record.refit["rows"]
    built = {p: p.stat().st_mtime_ns for p in cache.rglob(MANIFEST_FILE)}
    again = train(tiny_log_path, tmp_path / "disk2", fast_config, cache=cache)
    assert {p: p.stat().st_mtime_ns for p in cache.rglob(MANIFEST_FILE)} == built  # both caches reused as they were
    assert all(torch.equal(a, b) for a, b in zip(again.model.state_dict().values(), on_disk.model.state_dict().values()))


def test_the_refit_trains_the_selected_number_of_epochs_of_its_own_rows(tiny_log, tmp_path, fast_config):
    config = merge(fast_config, {"train": {"validate_every": 0.5, "max_epochs": 3, "patience": 3}})
    hooks = _Steps()
    trained = train(tiny_log, tmp_path / "run", config, hooks=hooks)
    record, steps = trained.record, trained.record.refit["steps"]
    selection_epoch = next(row["step"] for row in record.history if row["fraction"] == 1.0)
    refit_epoch = hooks.per_epoch[-1]
    assert refit_epoch > selection_epoch  # more rows, more steps an epoch
    assert record.refit["epochs"] == pytest.approx(record.best_step / selection_epoch)
    assert steps == round(record.refit["epochs"] * refit_epoch)
    assert len(hooks.steps) - steps == len(hooks.per_epoch) - steps  # the refit's steps are the last ones
    assert all(n == refit_epoch for n in hooks.per_epoch[-steps:])


def test_an_annealed_refit_changes_the_refits_decay_and_nothing_else(tiny_log, tmp_path, fast_config, one_thread):
    """``train.refit_anneal`` moves the end of the refit's cosine to its last step: the selected member is untouched,
    the refit member differs, and without a decay (``optim.decay = none``) the option changes nothing."""
    def published(name, **overrides):
        trained = train(tiny_log, tmp_path / name, merge(fast_config, overrides))
        return [m.state_dict() for m in members(trained.model)]

    def same(a, b):
        return all(torch.equal(a[k], b[k]) for k in a)

    (refit, selected), (annealed_refit, annealed_selected) = (
        published(f"decay-{anneal}", train={"refit_anneal": anneal}) for anneal in (False, True))
    assert same(selected, annealed_selected)
    assert not same(refit, annealed_refit)
    flat, flat_annealed = (published(f"flat-{anneal}", train={"refit_anneal": anneal}, optim={"decay": "none"})
                           for anneal in (False, True))
    assert all(same(a, b) for a, b in zip(flat, flat_annealed))
