"""The tuner: its search space validates, an interrupted study resumes to exactly the trials asked for, pruning stops
a trial inside its training, and best.toml trains."""

import csv
from pathlib import Path

import pytest
from typer.testing import CliRunner

from unitarget.cli import app
from unitarget.config import load_config, merge
from unitarget.errors import UnitargetError
from unitarget.streaming import REFIT_CACHE
from unitarget.training.hooks import SilentHooks
from unitarget.tuning import tune
from unitarget.tuning.space import SEARCH_SPACE, overrides, suggest
from unitarget.tuning.study import CACHE_DIR, TRIALS_DIR

optuna = pytest.importorskip("optuna")

#: Two settings keep the trials as small as the fast configuration.
SMALL_SPACE = [p for p in SEARCH_SPACE if p.key in ("optim.lr", "model.dropout")]
WIDTHS = next(p for p in SEARCH_SPACE if p.key == "model.hidden")
DOCS = Path(__file__).resolve().parent.parent / "docs" / "tuning.md"


class _Recorder(SilentHooks):
    """Progress hooks of one trial: the epochs it trained in; Ctrl-C after step ``stop_at`` of epoch 0 if given."""

    def __init__(self, stop_at: int | None = None) -> None:
        self.stop_at, self.epochs = stop_at, set()

    def on_step(self, epoch, step, steps, loss, examples_per_s) -> None:
        self.epochs.add(epoch)
        if (epoch, step) == (0, self.stop_at):
            raise KeyboardInterrupt


def test_every_point_of_the_search_space_is_a_valid_configuration():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(30):
        trial = study.ask()
        drawn = suggest(trial, SEARCH_SPACE)
        config = merge(load_config(), drawn)  # raises on a key or value the configuration refuses
        assert overrides(trial.params, SEARCH_SPACE) == drawn  # the recorded values give the same configuration
        assert config.model.hidden in WIDTHS.choices  # a choice of widths is recorded by label, read back as widths
    documented = DOCS.read_text()
    assert all(f"`{p.key}`" in documented for p in SEARCH_SPACE)


def test_an_interrupted_study_resumes_to_exactly_the_trials_asked_and_best_toml_trains(tiny_log_path, tmp_path,
                                                                                       fast_config, one_thread):
    out = tmp_path / "study"
    started: list[int] = []

    def hooks(stop_trial: int | None):
        def hooks_for(number: int) -> _Recorder:
            started.append(number)
            return _Recorder(stop_at=2 if number == stop_trial else None)
        return hooks_for

    with pytest.raises(KeyboardInterrupt):
        tune(tiny_log_path, out, trials=3, base_config=fast_config, space=SMALL_SPACE, hooks_for=hooks(1))
    assert started == [0, 1]
    assert sorted(p.name for p in (out / TRIALS_DIR).iterdir()) == ["0000"]  # no partial run of trial 1
    started.clear()
    result = tune(tiny_log_path, out, trials=3, base_config=fast_config, space=SMALL_SPACE, hooks_for=hooks(None))
    assert started == [2, 3]  # only the missing trials ran
    states = [t.state for t in result.trials]
    assert states == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    # one encoded cache, built once, and the refit's (train.refit: trials that complete refit on every row)
    caches = sorted(p.name for p in (out / CACHE_DIR).iterdir())
    assert len(caches) == 2 and REFIT_CACHE in caches
    assert len(list((out / CACHE_DIR / REFIT_CACHE).iterdir())) == 1
    best = max((t for t in result.trials if t.state == "COMPLETE"), key=lambda t: t.value)
    assert result.best.number == best.number
    assert [p.name for p in (out / TRIALS_DIR).iterdir()] == [f"{best.number:04d}"]  # only the best run is kept
    with open(out / "trials.csv") as f:
        assert [row["state"] for row in csv.DictReader(f)] == states
    assert (out / "trials.png").stat().st_size > 0
    assert load_config(out / "best.toml") == result.config
    assert result.config.optim.lr == best.params["optim.lr"]
    trained = CliRunner().invoke(app, ["train", "--data", str(tiny_log_path), "--out", str(tmp_path / "run"),
                                       "--config", str(out / "best.toml")])
    assert trained.exit_code == 0, trained.output
    with pytest.raises(UnitargetError, match="another base config"):
        tune(tiny_log_path, out, trials=3, base_config=merge(fast_config, {"train": {"seed": 9}}), space=SMALL_SPACE)


def test_a_pruned_trial_stops_inside_its_training_and_leaves_no_run(tiny_log_path, tmp_path, fast_config, one_thread):
    recorders: list[_Recorder] = []

    def hooks_for(number: int) -> _Recorder:
        recorders.append(_Recorder())
        return recorders[-1]

    config = merge(fast_config, {"train": {"max_epochs": 3, "patience": 3}})
    never_good_enough = optuna.pruners.ThresholdPruner(lower=2.0)  # AP is at most 1: prunes at the first report
    result = tune(tiny_log_path, tmp_path, trials=1, base_config=config, space=SMALL_SPACE, pruner=never_good_enough,
                  hooks_for=hooks_for)
    (trial,) = result.trials
    assert trial.state == "PRUNED" and "pruned after 1.00 epochs" in trial.note
    assert recorders[0].epochs == {0}  # the second and third epochs never started
    assert not any((tmp_path / TRIALS_DIR).iterdir())  # neither a run nor a partial one
    assert result.best is None and not (tmp_path / "best.toml").exists()
    stored = optuna.load_study(study_name="unitarget", storage=f"sqlite:///{tmp_path / 'study.db'}").trials[0]
    assert list(stored.intermediate_values) == [100]  # reported at the end of epoch 1, in hundredths of an epoch


def test_the_tune_command_writes_best_toml_and_refuses_to_resume_another_study(tiny_log_path, tmp_path):
    from unitarget.toml_writer import dumps
    from tests.conftest import FAST

    (tmp_path / "fast.toml").write_text(dumps(FAST))
    args = ["tune", "--data", str(tiny_log_path), "--out", str(tmp_path / "study"), "--trials", "1",
            "--config", str(tmp_path / "fast.toml")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "best trial 0" in result.output and load_config(tmp_path / "study" / "best.toml").train.batch_size in (
        1024, 2048, 4096)
    again = CliRunner().invoke(app, [*args, "--preset", "logreg"])
    assert again.exit_code == 2 and "another base config" in again.output
