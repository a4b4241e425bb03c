"""``unitarget tune``: an Optuna study of the search space, resumable from its SQLite file.

Each trial is one ``pipeline.train`` of the base configuration with the trial's settings (``tuning.space``) on the
log's fit / validation split: the newest ``train.valid_days`` select, as in any training, and its score is the
run's best validation score (``valid_score``, what the loop keeps the best weights by). The log is the one the user
trains on: nothing here holds out or reads test days. A log on disk is encoded once into ``DIR/cache`` and every
trial reads that cache (the space changes no encoding setting).

The study lives in ``DIR/study.db`` (``sqlite:///``): a rerun with the same ``DIR`` loads it and runs only the
trials still missing (complete and pruned ones count; a trial cut short by Ctrl-C or a kill is run again as a new
trial). TPE draws the settings (seeded: ``seed`` plus the trials the study already has, so a resumed study does not
redraw the points it tried) and a pruner (median by default) stops a trial whose validation score falls behind the
others' at the same point of training: each validation is reported at its optimiser step in hundredths of an epoch
(100 = the end of the first epoch), so trials of different batch sizes compare at the same amount of data. A
pruned trial raises out of the training loop at once and its partial run directory is removed; a trial whose loss
diverges counts as pruned. Only the best trial's run is kept, in ``DIR/trials/NNNN``: the model, trained already.
One ``tune`` at a time per ``DIR``.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from unitarget.config import Config, merge
from unitarget.errors import UnitargetError
from unitarget.pipeline import train
from unitarget.runs import TRAINING_FILE, Staging
from unitarget.streaming import Progress
from unitarget.tracking import NO_TRACKER, TrackedRun, Tracker, record_metrics
from unitarget.training.hooks import ChainedHooks, SilentHooks, TrainingHooks
from unitarget.training.loop import TrainingDivergedError
from unitarget.tuning.outputs import TrialSummary, write_outputs
from unitarget.tuning.space import SEARCH_SPACE, Param, overrides, suggest

STUDY_FILE = "study.db"
TRIALS_DIR = "trials"
CACHE_DIR = "cache"
_STUDY = "unitarget"
_EXTRA = "unitarget tune needs the 'tune' extra: pip install 'unitarget[tune]'"


@dataclass(frozen=True)
class TuneResult:
    """A study's trials so far, its best trial (None while no trial completed) and that trial's configuration."""

    out: Path
    trials: tuple[TrialSummary, ...]
    best: TrialSummary | None
    config: Config | None

    @property
    def best_run(self) -> Path | None:
        """The best trial's run directory (a trained model)."""
        return None if self.best is None else trial_dir(self.out, self.best.number)


def trial_dir(out: Path, number: int) -> Path:
    """Where trial ``number`` trains: ``out/trials/NNNN``."""
    return out / TRIALS_DIR / f"{number:04d}"


def tune(
    data: str | Path | pa.Table,
    out: str | Path,
    *,
    trials: int,
    timeout: float | None = None,
    base_config: Config = Config(),
    space: Sequence[Param] = SEARCH_SPACE,
    seed: int = 0,
    pruner: Any = None,
    hooks_for: Callable[[int], TrainingHooks] = lambda _: SilentHooks(),
    log: Callable[[str], None] = lambda _: None,
    tracker: Tracker = NO_TRACKER,
    progress: Progress | None = None,
) -> TuneResult:
    """Run the study in ``out`` until it has ``trials`` finished trials, or start none after ``timeout`` seconds;
    write ``best.toml``, ``trials.csv`` and ``trials.png`` there and return the result.

    ``pruner`` is an ``optuna.pruners.BasePruner`` (default: ``MedianPruner`` after 5 trials); ``hooks_for(n)`` gives
    trial ``n``'s progress hooks. With a ``tracker``, the study is one run (reopened by a resumed study) and each
    trial a run nested in it. Resuming with another base configuration, search space or log is refused."""
    optuna = _optuna()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    study = _open_study(optuna, out, base_config, space, data, seed, pruner)
    finished = sum(t.state.name in ("COMPLETE", "PRUNED") for t in study.trials)
    remaining = max(0, trials - finished)
    log(f"study {out / STUDY_FILE}: {finished} trials finished, {remaining} to run")
    with tracker.run(f"tune {out.name}", base_config.to_json_dict(),
                     resume=study.user_attrs.get("tracking_run")) as parent:
        if parent.id:
            study.set_user_attr("tracking_run", parent.id)
        objective = _Objective(optuna, data, out, base_config, space, hooks_for, parent, progress)
        if remaining:
            study.optimize(objective, n_trials=remaining, timeout=timeout,
                           callbacks=[lambda s, t: _after_trial(s, t, out, log)])
        result = _result(study, out, base_config, space)
        paths = write_outputs(out, result.trials, [p.key for p in space], result.config)
        if result.best is not None:
            parent.log_metrics({"best_valid_score": result.best.value, "best_trial": result.best.number})
        parent.log_artifacts(paths)
    return result


def quiet_optuna() -> None:
    """Optuna's own line per trial off (warnings stay): the CLI prints its own."""
    optuna = _optuna()
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def _optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise UnitargetError(_EXTRA) from None
    return optuna


def _open_study(optuna: Any, out: Path, base_config: Config, space: Sequence[Param], data: str | Path | pa.Table,
                seed: int, pruner: Any) -> Any:
    """The study in ``out/study.db``, created or loaded; trials a kill left running are marked failed."""
    storage = f"sqlite:///{(out / STUDY_FILE).resolve()}"
    study = optuna.create_study(study_name=_STUDY, storage=storage, direction="maximize", load_if_exists=True)
    identity = _jsonable({"base_config": base_config.to_json_dict(), "space": [p.describe() for p in space],
                          "data": _data_name(data)})
    for key, value in identity.items():
        if key not in study.user_attrs:
            study.set_user_attr(key, value)
        elif study.user_attrs[key] != value:
            raise UnitargetError(f"{out} holds a study with another {key.replace('_', ' ')}: rerun with the same "
                                 f"--data, --config and --preset to resume it, or tune into a new --out")
    for trial in study.trials:
        if trial.state.name == "RUNNING":  # killed: one tune at a time per directory
            study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
    for leftover in (out / TRIALS_DIR).glob(".*.partial"):
        shutil.rmtree(leftover, ignore_errors=True)
    sampler = optuna.samplers.TPESampler(seed=seed + len(study.trials))
    return optuna.load_study(study_name=_STUDY, storage=storage, sampler=sampler,
                             pruner=pruner if pruner is not None else optuna.pruners.MedianPruner(n_startup_trials=5))


class _Objective:
    """One trial: draw the settings, train with pruning hooks, return the best validation score."""

    def __init__(self, optuna: Any, data: str | Path | pa.Table, out: Path, base_config: Config,
                 space: Sequence[Param], hooks_for: Callable[[int], TrainingHooks], parent: TrackedRun,
                 progress: Progress | None) -> None:
        self.optuna, self.data, self.out, self.base, self.space = optuna, data, out, base_config, space
        self.hooks_for, self.parent, self.progress = hooks_for, parent, progress

    def __call__(self, trial: Any) -> float:
        config = merge(self.base, suggest(trial, self.space))
        run_dir = trial_dir(self.out, trial.number)
        cache = None if isinstance(self.data, pa.Table) else self.out / CACHE_DIR
        pruned = self.optuna.TrialPruned
        with self.parent.child(f"trial {trial.number}", config.to_json_dict(), finished_on=(pruned,)) as tracked:
            tracked.set_tags({"trial": str(trial.number)})
            hooks = ChainedHooks(self.hooks_for(trial.number), tracked.hooks, _Pruning(trial, pruned))
            try:
                trained = train(self.data, run_dir, config, hooks=hooks, cache=cache, progress=self.progress)
            except TrainingDivergedError as err:
                trial.set_user_attr("note", f"diverged: {err}")
                tracked.set_tags({"state": "PRUNED"})
                raise pruned(str(err)) from None
            except pruned:
                tracked.set_tags({"state": "PRUNED"})
                raise
            finally:  # a pruned, diverged or interrupted trial leaves no half-written run
                shutil.rmtree(Staging(run_dir).path, ignore_errors=True)
            tracked.set_tags({"state": "COMPLETE"})
            tracked.log_metrics(record_metrics(trained.record))
            tracked.log_artifacts([run_dir / TRAINING_FILE])
        return trained.record.best_valid_score


class _Pruning(SilentHooks):
    """Reports each validation to the trial and stops training (raises ``pruned``) when the pruner says so."""

    def __init__(self, trial: Any, pruned: type[Exception]) -> None:
        self.trial, self.pruned, self.steps = trial, pruned, 1

    def on_step(self, epoch: int, step: int, steps: int, loss: float, examples_per_s: float) -> None:
        """Note the steps per epoch, to place validations in hundredths of an epoch."""
        self.steps = steps

    def on_validation(self, record: dict[str, Any]) -> None:
        """Report the score at its point in training; raise if the trial is to stop."""
        at = round(100 * record["step"] / self.steps)
        self.trial.report(record["valid_score"], at)
        if self.trial.should_prune():
            note = f"pruned after {at / 100:.2f} epochs at validation score {record['valid_score']:.4f}"
            self.trial.set_user_attr("note", note)
            raise self.pruned(note)


def _after_trial(study: Any, trial: Any, out: Path, log: Callable[[str], None]) -> None:
    """Keep only the best trial's run, and say how the trial ended."""
    best = _best(study)
    for run in (out / TRIALS_DIR).glob("*"):
        if run.is_dir() and (best is None or run != trial_dir(out, best.number)):
            shutil.rmtree(run, ignore_errors=True)
    summary = TrialSummary.of(trial)
    value = "n/a" if summary.value is None else f"{summary.value:.4f}"
    best_text = "" if best is None else f" (best {best.value:.4f}, trial {best.number})"
    log(f"trial {trial.number} {summary.state.lower()}: validation score {value}{best_text}, "
        f"{summary.seconds or 0:.0f} s")


def _best(study: Any) -> Any:
    complete = [t for t in study.trials if t.state.name == "COMPLETE" and math.isfinite(t.value)]
    return max(complete, key=lambda t: t.value) if complete else None


def _result(study: Any, out: Path, base_config: Config, space: Sequence[Param]) -> TuneResult:
    best = _best(study)
    config = None if best is None else merge(base_config, overrides(best.params, space))
    return TuneResult(out, tuple(TrialSummary.of(t) for t in study.trials),
                      None if best is None else TrialSummary.of(best), config)


def _data_name(data: str | Path | pa.Table) -> str:
    return f"a table of {data.num_rows} rows" if isinstance(data, pa.Table) else str(Path(data).resolve())


def _jsonable(value: Any) -> Any:
    """As the study stores it (tuples become lists), so a stored value compares equal to a fresh one."""
    return json.loads(json.dumps(value))
