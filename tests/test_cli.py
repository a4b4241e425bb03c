"""The command line: each command works, and user errors exit 2 with one message, no traceback."""

import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from unitarget.cli import app

runner = CliRunner()

FAST = """
[model]
hidden = [16]
tower_hidden = [8]
embedding_dim = 4
[train]
batch_size = 512
max_epochs = 1
valid_days = 4
"""


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, tiny_log_path):
    root = tmp_path_factory.mktemp("cli")
    (root / "fast.toml").write_text(FAST)
    result = runner.invoke(app, ["train", "--data", str(tiny_log_path), "--out", str(root / "run"),
                                 "--config", str(root / "fast.toml"), "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert "published: the mean of the refit model's and the selected model's logits" in result.output
    return root


def test_synth_writes_a_log_and_the_world(tmp_path):
    result = runner.invoke(app, ["synth", "--out", str(tmp_path), "--users", "200", "--shows", "50",
                                 "--impressions", "3000", "--days", "14"])
    assert result.exit_code == 0, result.output
    assert pq.read_metadata(tmp_path / "impressions.parquet").num_rows == 3000
    assert (tmp_path / "world").is_dir()


def test_predict_and_evaluate(trained_run, tiny_log_path):
    preds = trained_run / "preds.parquet"
    result = runner.invoke(app, ["predict", "--model", str(trained_run / "run"), "--data", str(tiny_log_path),
                                 "--out", str(preds)])
    assert result.exit_code == 0, result.output
    assert "p_ad_stream" in pq.read_schema(preds).names
    result = runner.invoke(app, ["evaluate", "--model", str(trained_run / "run"), "--data", str(tiny_log_path),
                                 "--out", str(trained_run / "eval")])
    assert result.exit_code == 0, result.output
    assert "ads_stream" in result.output
    rows = json.loads((trained_run / "eval" / "evaluation.json").read_text())["rows"]
    assert {r["target"] for r in rows} >= {"promotions_stream", "ads_stream"}


def test_evaluate_streams_a_directory_log_to_the_in_memory_result(trained_run, tiny_log, tmp_path):
    from unitarget.io import atomic_write_json
    from unitarget.pipeline import load_log, load_model

    for part, start in enumerate(range(0, tiny_log.num_rows, 9_000)):  # files of 9,000 rows, chunks of 7,000
        (tmp_path / "log").mkdir(exist_ok=True)
        pq.write_table(tiny_log.slice(start, 9_000), tmp_path / "log" / f"part-{part}.parquet")
    result = runner.invoke(app, ["evaluate", "--model", str(trained_run / "run"), "--data", str(tmp_path / "log"),
                                 "--chunk-rows", "7000", "--out", str(tmp_path / "eval")])
    assert result.exit_code == 0, result.output
    model = load_model(trained_run / "run")
    atomic_write_json(tmp_path / "whole.json", model.evaluate(load_log(tmp_path / "log", model.config)).to_dict())
    assert (tmp_path / "eval" / "evaluation.json").read_text() == (tmp_path / "whole.json").read_text()


def test_evaluate_with_a_linear_baseline_and_the_informed_oracle(trained_run, tiny_log, tiny_log_path, tmp_path):
    """--baseline adds the logreg run's row and a verdict per head; --world adds the informed oracle's AP;
    the oracle ratio column is there on a synthetic log. A baseline fitted on other days is refused."""
    from unitarget.data.split import split_newest_days

    baseline = tmp_path / "logreg"
    result = runner.invoke(app, ["train", "--data", str(tiny_log_path), "--out", str(baseline), "--preset", "logreg",
                                 "--config", str(trained_run / "fast.toml")])
    assert result.exit_code == 0, result.output
    newest_days = split_newest_days(tiny_log, 5, purpose="testing", setting="t").newest
    pq.write_table(newest_days, tmp_path / "newest.parquet")
    newest = str(tmp_path / "newest.parquet")
    result = runner.invoke(app, ["evaluate", "--model", str(trained_run / "run"), "--data", newest,
                                 "--baseline", str(baseline), "--world", str(tiny_log_path.parent),
                                 "--out", str(tmp_path / "eval")])
    assert result.exit_code == 0, result.output
    md = (tmp_path / "eval" / "evaluation.md").read_text()
    assert "| segment | AP | informed oracle AP | oracle AP | AP / oracle |" in md
    assert md.count("| logreg (all) |") == 5  # promotions_stream, ads_stream, click, like, follow
    assert md.count("beat logreg on") == 5
    saved = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    assert saved["baseline"]["name"] == "logreg" and all(r["informed_oracle_ap"] is not None
                                                          for r in saved["rows"] if r["n_pos"] > 0)

    other = tmp_path / "other"  # the same baseline, as if fitted on days that end earlier
    shutil.copytree(baseline, other)
    record = json.loads((other / "training.json").read_text())
    record["train_range"][1] = record["train_range"][0]
    (other / "training.json").write_text(json.dumps(record))
    result = runner.invoke(app, ["evaluate", "--model", str(trained_run / "run"), "--data", newest,
                                 "--baseline", str(other)])
    assert result.exit_code == 2 and "not trained on the model's days" in result.output


@pytest.mark.parametrize("log, message", [
    (lambda log: log.slice(0, 0), "empty dataset"),
    (lambda log: log.drop_columns(["stream"]), "missing required column 'stream'"),
    (lambda log: log.set_column(log.schema.get_field_index("like"), "like", pa.array([3] * log.num_rows)),
     "like"),
])
def test_evaluate_on_a_bad_log_exits_2_with_one_message(trained_run, tiny_log, tmp_path, log, message):
    pq.write_table(log(tiny_log), tmp_path / "bad.parquet")
    result = runner.invoke(app, ["evaluate", "--model", str(trained_run / "run"), "--data",
                                 str(tmp_path / "bad.parquet"), "--out", str(tmp_path / "eval")])
    assert result.exit_code == 2 and message in result.output, result.output
    assert "Traceback" not in result.output and not (tmp_path / "eval").exists()


def test_bad_log_exits_2_with_a_message_naming_the_column(trained_run, tiny_log, tmp_path):
    bad = tiny_log.set_column(tiny_log.schema.get_field_index("stream"), "stream",
                              pa.array([2] * tiny_log.num_rows, pa.int8()))
    pq.write_table(bad, tmp_path / "bad.parquet")
    result = runner.invoke(app, ["predict", "--model", str(trained_run / "run"), "--data",
                                 str(tmp_path / "bad.parquet"), "--out", str(tmp_path / "p.parquet")])
    assert result.exit_code == 2
    assert "stream" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "p.parquet").exists()


@pytest.mark.parametrize("args", [
    ["train", "--data", "{log}", "--out", "{tmp}/r", "--preset", "nope"],
    ["train", "--data", "{tmp}/missing.parquet", "--out", "{tmp}/r"],
    ["predict", "--model", "{tmp}/no-run", "--data", "{log}", "--out", "{tmp}/p.parquet"],
])
def test_user_errors_exit_2_without_traceback(args, tmp_path, tiny_log_path):
    args = [a.format(log=tiny_log_path, tmp=tmp_path) for a in args]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "error" in result.output and "Traceback" not in result.output
