"""Batch audience scoring: every user once, in chunks, as the PyTorch model would score them; the
campaign spec is strict; the output appears whole or not at all."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from tests.serving_fixtures import Exported, exported_model
from unitarget.cli import app as cli
from unitarget.errors import ConfigError, UnitargetError
from unitarget.pipeline import load_model
from unitarget.serving.audience import CampaignSpec, _score_chunk, parse_campaign, score_audience
from unitarget.serving.runtime import load_exported
from unitarget.serving.tables import CANDIDATE_FIELDS, constant_columns, context_columns

CAMPAIGN = {"show_id": "s00036", "campaign_id": "c00030", "format": "video", "slot": "pre_roll",
            "surface": "in_stream_video", "ts": "2026-01-20T08:00:00Z"}


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_log_path) -> Exported:
    return exported_model(tmp_path_factory.mktemp("serving"), tiny_log_path)


@pytest.fixture(scope="module")
def users(tiny_log, tmp_path_factory) -> pa.Table:
    """One row per distinct user of the log with their user columns, plus one unknown user."""
    columns = ["user_id", "user_country", "user_age_bucket", "user_history_shows", "user_followed_shows"]
    first = pc.index_in(pc.unique(tiny_log.column("user_id")), value_set=tiny_log.column("user_id"))
    table = tiny_log.select(columns).take(first)
    stranger = pa.table({"user_id": ["never-seen"], "user_country": [None], "user_age_bucket": [None],
                         "user_history_shows": [[]], "user_followed_shows": [None]}, schema=table.schema)
    return pa.concat_tables([table, stranger])


def test_every_user_is_scored_once_in_order_as_the_pytorch_model_would(exported, users, tmp_path):
    pq.write_table(users, tmp_path / "users.parquet")
    report = score_audience(exported.v1, tmp_path / "users.parquet", CampaignSpec.model_validate(CAMPAIGN),
                            tmp_path / "out.parquet", chunk_rows=100)
    out = pq.read_table(tmp_path / "out.parquet")
    assert report.rows == users.num_rows == out.num_rows
    assert pq.ParquetFile(tmp_path / "out.parquet").num_row_groups == -(-users.num_rows // 100)  # streamed
    assert out.column("user_id").to_pylist() == users.column("user_id").to_pylist()
    assert out.column_names == ["user_id", "p_promo_stream", "p_ad_stream", "p_click", "p_like", "p_follow"]
    probabilities = np.column_stack([out.column(c).to_numpy() for c in out.column_names[1:]])
    trained = load_model(exported.run)
    spec = CampaignSpec.model_validate(CAMPAIGN)
    # The same rows through the training code path (PyTorch) agree with the exported graph.
    table = users.slice(0, 300)
    for name, column in _campaign_columns(spec, table.num_rows).items():
        table = table.append_column(name, column)
    np.testing.assert_allclose(probabilities[:300], trained.probabilities(table), atol=1e-4)
    assert np.all((probabilities > 0) & (probabilities < 1))


def _campaign_columns(spec: CampaignSpec, n: int) -> dict[str, pa.Array]:
    return constant_columns(spec, CANDIDATE_FIELDS, n) | context_columns(spec, n)


def test_a_users_table_with_only_user_id_scores_the_rest_as_unknown(exported, tmp_path):
    pq.write_table(pa.table({"user_id": pa.array(["u000087", "u1"]).dictionary_encode()}), tmp_path / "u.parquet")
    report = score_audience(exported.v1, tmp_path / "u.parquet", parse_campaign(json.dumps(CAMPAIGN)),
                            tmp_path / "o.parquet")
    assert report.rows == 2


def test_a_failure_midway_leaves_an_existing_output_untouched(exported, users, tmp_path):
    pq.write_table(users, tmp_path / "users.parquet")
    (tmp_path / "out.parquet").write_bytes(b"previous result")

    def fail(rows: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        score_audience(exported.v1, tmp_path / "users.parquet", CampaignSpec.model_validate(CAMPAIGN),
                       tmp_path / "out.parquet", chunk_rows=50, on_chunk=fail)
    assert (tmp_path / "out.parquet").read_bytes() == b"previous result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.parquet", "users.parquet"]


def test_campaign_specs_inline_json_and_toml_files(tmp_path):
    assert parse_campaign(json.dumps(CAMPAIGN)).show_id == "s00036"
    (tmp_path / "c.json").write_text(json.dumps(CAMPAIGN))
    assert parse_campaign(tmp_path / "c.json").format == "video"
    (tmp_path / "c.toml").write_text('show_id = "s00036"\nsurface = "search"\ncreative_id = "cr1"\n')
    assert parse_campaign(str(tmp_path / "c.toml")).surface == "search"


@pytest.mark.parametrize("spec, message", [
    ('{"show_id": "s", "colour": "red"}', "colour: Extra inputs"),
    ('{"campaign_id": "c"}', "show_id: Field required"),
    ('{"show_id": "s", "price": NaN}', "NaN is not a valid JSON number"),
    ("{not json", "not valid JSON"),
    ("missing.toml", "neither inline JSON nor an existing file"),
])
def test_bad_campaign_specs_are_named(spec, message):
    with pytest.raises(ConfigError, match=message):
        parse_campaign(spec)


def test_a_users_table_without_user_id_is_refused(exported, tmp_path):
    pq.write_table(pa.table({"listener": ["a"]}), tmp_path / "u.parquet")
    with pytest.raises(UnitargetError, match="no 'user_id' column"):
        score_audience(exported.v1, tmp_path / "u.parquet", CampaignSpec.model_validate(CAMPAIGN), tmp_path / "o.parquet")


def test_cli_score_audience(exported, users, tmp_path):
    pq.write_table(users, tmp_path / "users.parquet")
    args = ["score-audience", "--model", str(exported.v1), "--users", str(tmp_path / "users.parquet"),
            "--out", str(tmp_path / "out.parquet"), "--chunk-rows", "128"]
    result = CliRunner().invoke(cli, [*args, "--campaign", json.dumps(CAMPAIGN)])
    assert result.exit_code == 0, result.output
    assert pq.read_metadata(tmp_path / "out.parquet").num_rows == users.num_rows
    bad = CliRunner().invoke(cli, [*args, "--campaign", '{"show_id": 5}'])
    assert bad.exit_code == 2 and "show_id" in bad.output


def test_chunk_scoring_uses_the_campaign_on_every_row(exported, users):
    model = load_exported(exported.v1, check_parity=False)
    a = _score_chunk(model, users.slice(0, 5), CampaignSpec.model_validate(CAMPAIGN), datetime.now(timezone.utc))
    other = CampaignSpec.model_validate(CAMPAIGN | {"show_id": "s00001", "format": "audio"})
    b = _score_chunk(model, users.slice(0, 5), other, datetime.now(timezone.utc))
    assert a.shape == b.shape == (5, 5) and not np.allclose(a, b)
