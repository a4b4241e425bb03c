"""Temporal splits, and the short-log rule that lets a one-week log train with the defaults."""

import datetime as dt
import json
import logging

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from unitarget.cli import app
from unitarget.config import Config, merge
from unitarget.data.split import split_newest_days
from unitarget.errors import UnitargetError
from unitarget.pipeline import train

START = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)


def _log(days: float, n: int = 4000, seed: int = 0, promotions_until: float | None = None) -> pa.Table:
    """``n`` impressions spread over ``days`` days from midnight; promotions only in the first
    ``promotions_until`` days when given."""
    rng = np.random.default_rng(seed)
    minutes = np.sort(rng.uniform(0, days * 24 * 60, n))
    source = np.where(rng.random(n) < 0.5, "ads", "promotions")
    if promotions_until is not None:
        source[minutes >= promotions_until * 24 * 60] = "ads"
    users, shows = rng.integers(0, 200, n), rng.integers(0, 30, n)
    return pa.table({
        "impression_id": [f"i{i}" for i in range(n)],
        "ts": pa.array([START + dt.timedelta(minutes=float(m)) for m in minutes], pa.timestamp("us", tz="UTC")),
        "source": source,
        "user_id": [f"u{u}" for u in users],
        "show_id": [f"s{s}" for s in shows],
        "stream": pa.array(rng.random(n) < 0.05 + 0.15 * (users % 5 == shows % 5), pa.bool_()),
    })


def test_a_long_enough_log_holds_out_exactly_the_configured_days():
    split = split_newest_days(_log(20), 7, purpose="validation")
    assert (split.days, split.note) == (7, None)
    first_held = split.newest.column("ts")[0].as_py()
    assert first_held >= START + dt.timedelta(days=13) and split.older.num_rows + split.newest.num_rows == 4000


def test_a_one_week_log_holds_out_a_fifth_of_its_span_and_says_so(caplog):
    with caplog.at_level(logging.WARNING, logger="unitarget"):
        split = split_newest_days(_log(7), 7, purpose="validation", setting="train.valid_days")
    assert split.days == pytest.approx(1.4, abs=1e-3) and split.configured_days == 7
    assert "train.valid_days" in split.note and "7.00 days" in split.note
    assert split.note in caplog.text
    share = split.newest.num_rows / 4000
    assert 0.15 < share < 0.25  # uniform traffic: about a fifth of the rows


def test_the_window_is_never_shorter_than_a_day():
    split = split_newest_days(_log(3), 7, purpose="testing")
    assert split.days == 1.0


def test_a_log_too_short_for_any_honest_split_names_its_span_and_the_setting():
    with pytest.raises(UnitargetError, match=r"spans 1\.00 days.*evaluation\.test_days \(now 7\)"):
        split_newest_days(_log(0.8), 7, purpose="testing", setting="evaluation.test_days")


def test_a_shortened_window_without_one_sources_rows_is_refused():
    with pytest.raises(UnitargetError, match="source 'promotions' has no rows in the newest 1.4 days"):
        split_newest_days(_log(7, promotions_until=5), 7, purpose="validation", setting="train.valid_days")


def test_a_one_week_log_trains_with_the_default_configuration_and_records_the_rule(tmp_path):
    config = merge(Config(), {"train": {"max_epochs": 1}})  # only to keep the test short
    trained = train(_log(7, n=6000), tmp_path / "run", config)
    window = json.loads((tmp_path / "run" / "training.json").read_text())["valid_window"]
    assert window["days"] == pytest.approx(1.4, abs=1e-3) and window["configured_days"] == 7
    assert window["note"] == trained.record.valid_window["note"]


def test_train_on_a_short_log_prints_the_note_and_succeeds(tmp_path):
    pq.write_table(_log(7, n=3000), tmp_path / "week.parquet")
    (tmp_path / "fast.toml").write_text("[train]\nmax_epochs = 1\n")
    result = CliRunner().invoke(app, ["train", "--data", str(tmp_path / "week.parquet"), "--out",
                                      str(tmp_path / "run"), "--config", str(tmp_path / "fast.toml")])
    assert result.exit_code == 0, result.output
    assert "note:" in result.output and "train.valid_days = 7" in result.output
