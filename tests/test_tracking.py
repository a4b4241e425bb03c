"""Experiment tracking: what train, ablate and tune log to a local MLflow store, read back with the MLflow client;
the package without the optional extras."""

import json
import shutil
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from unitarget.cli import app
from unitarget.errors import UnitargetError
from unitarget.toml_writer import dumps
from unitarget.tracking import flat_params, make_tracker
from tests.conftest import FAST

runner = CliRunner()

def _fast_toml(path, **train):
    """The suite's fast configuration as a ``--config`` file, with ``train`` overrides."""
    path.write_text(dumps({**FAST, "train": {**FAST["train"], **train}}))
    return str(path)


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory):
    """An MLflow SQLite store with its tables made: creating them takes seconds, copying the file does not."""
    pytest.importorskip("mlflow")
    root = tmp_path_factory.mktemp("store")
    make_tracker("mlflow", None, root, "unused")
    return root / "mlflow.db"


def _store_in(directory, empty_store) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(empty_store, directory / "mlflow.db")


def _client(store):
    mlflow = pytest.importorskip("mlflow")
    return mlflow.tracking.MlflowClient(f"sqlite:///{store / 'mlflow.db'}")


def _runs(client, experiment: str):
    found = client.get_experiment_by_name(experiment)
    return client.search_runs([found.experiment_id])


def test_train_logs_its_configuration_every_validation_and_its_record(tiny_log_path, tmp_path, empty_store):
    out = tmp_path / "runs" / "unified"
    _store_in(out.parent, empty_store)
    result = runner.invoke(app, ["train", "--data", str(tiny_log_path), "--out", str(out), "--config",
                                 _fast_toml(tmp_path / "fast.toml"), "--track", "mlflow"])
    assert result.exit_code == 0, result.output
    client = _client(out.parent)  # the store beside the run: publishing replaces the run directory whole
    (run,) = _runs(client, "unitarget train")
    assert run.info.status == "FINISHED" and run.info.run_name == "unified"
    assert run.data.params["optim.lr"] == "0.002" and run.data.params["model.hidden"] == "[32, 16]"
    record = json.loads((out / "training.json").read_text())
    scores = client.get_metric_history(run.info.run_id, "valid_score")
    assert [(m.step, m.value) for m in scores] == [(h["step"], h["valid_score"]) for h in record["history"]]
    assert run.data.metrics["best_valid_score"] == record["best_valid_score"]
    assert {a.path for a in client.list_artifacts(run.info.run_id)} == {"training.json", "config.json"}


def test_ablate_logs_a_parent_run_with_a_nested_run_per_setup_and_seed(tiny_log_path, tmp_path, empty_store):
    _store_in(tmp_path, empty_store)
    result = runner.invoke(app, ["ablate", "--data", str(tiny_log_path), "--out", str(tmp_path), "--only",
                                 "promo-baseline", "--seeds", "1", "--no-curve", "--config",
                                 _fast_toml(tmp_path / "fast.toml", valid_days=3), "--track", "mlflow"])
    assert result.exit_code == 0, result.output
    client = _client(tmp_path)
    runs = {r.info.run_name: r for r in _runs(client, "unitarget ablate")}
    parent, child = runs[f"ablate paper {tmp_path.name}"], runs["promo-baseline-seed0"]
    assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert child.data.params["train.seed"] == "0" and child.data.params["train.valid_days"] == "3.0"
    assert 0 < child.data.metrics["test/promotions_ap"] <= 1
    assert len(client.get_metric_history(child.info.run_id, "valid_score")) >= 1
    assert "ABLATION.md" in {a.path for a in client.list_artifacts(parent.info.run_id)}


def test_tune_nests_every_trial_under_one_study_run_also_when_resumed(tiny_log_path, tmp_path, fast_config,
                                                                      empty_store, one_thread):
    optuna = pytest.importorskip("optuna")
    _store_in(tmp_path, empty_store)
    from unitarget.tuning import tune
    from unitarget.tuning.space import SEARCH_SPACE

    space = [p for p in SEARCH_SPACE if p.key == "optim.lr"]
    pruner = optuna.pruners.NopPruner()
    for trials in (1, 2):  # the second call resumes the study and runs one more trial
        tracker = make_tracker("mlflow", None, tmp_path, "unitarget tune")
        tune(tiny_log_path, tmp_path, trials=trials, base_config=fast_config, space=space, pruner=pruner,
             tracker=tracker)
    client = _client(tmp_path)
    runs = {r.info.run_name: r for r in _runs(client, "unitarget tune")}
    assert set(runs) == {f"tune {tmp_path.name}", "trial 0", "trial 1"}
    parent = runs[f"tune {tmp_path.name}"]
    for n in (0, 1):
        trial = runs[f"trial {n}"]
        assert trial.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert trial.data.tags["state"] == "COMPLETE"
        scores = client.get_metric_history(trial.info.run_id, "valid_score")
        assert len(scores) >= 1 and trial.data.metrics["best_valid_score"] == max(m.value for m in scores)
    study = optuna.load_study(study_name="unitarget", storage=f"sqlite:///{tmp_path / 'study.db'}")
    assert float(runs["trial 1"].data.params["optim.lr"]) == study.trials[1].params["optim.lr"]
    assert parent.data.metrics["best_valid_score"] == study.best_value
    assert {"best.toml", "trials.csv", "trials.png"} <= {a.path for a in client.list_artifacts(parent.info.run_id)}


def test_params_are_flattened_to_dotted_keys():
    assert flat_params({"optim": {"lr": 0.002}, "model": {"hidden": [16, 8], "experts": {"groups": {}}},
                        "train": {"threads": None}}) == {
        "optim.lr": "0.002", "model.hidden": "[16, 8]", "model.experts.groups": "{}", "train.threads": "null"}


@pytest.mark.parametrize("kind, uri, message", [
    ("wandb", None, "unknown tracker 'wandb'"),
    (None, "sqlite:///x.db", "--track-uri needs --track mlflow"),
    ("mlflow", "file:///tmp/mlruns", "cannot use the MLflow store file:///tmp/mlruns"),
])
def test_a_bad_tracker_is_one_clear_error(kind, uri, message, tmp_path):
    with pytest.raises(UnitargetError, match=message):
        make_tracker(kind, uri, tmp_path, "x")


def test_the_package_works_without_the_optional_extras_and_names_them_when_asked(tmp_path):
    code = """
import sys
sys.modules["optuna"] = None  # as if not installed: importing it raises ImportError
sys.modules["mlflow"] = None
import unitarget.cli, unitarget.tuning, unitarget.tracking
from unitarget.errors import UnitargetError
from pathlib import Path
for call in (lambda: unitarget.tracking.make_tracker("mlflow", None, Path(sys.argv[1]), "x"),
             lambda: unitarget.tuning.tune("log", sys.argv[1], trials=1)):
    try:
        call()
    except UnitargetError as err:
        print(err)
"""
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True)
    assert done.stdout.splitlines() == ["--track mlflow needs the 'track' extra: pip install 'unitarget[track]'",
                                        "unitarget tune needs the 'tune' extra: pip install 'unitarget[tune]'"]
