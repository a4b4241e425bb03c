"""Model arms, the `simulate` command and the reproduction's Table 2 section, with tiny models."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from unitarget.cli import app
from unitarget.config import SimulateConfig, merge
from unitarget.errors import UnitargetError
from unitarget.pipeline import load_log, train
from unitarget.presets import apply_preset
from unitarget.simulation import ArmSpec, parse_arm
from unitarget.simulation.market import build_marketplace
from unitarget.simulation.metrics import METRICS
from unitarget.experiments.simulation import run_paper_ab
from unitarget.reports.table2 import reproduction_section
from unitarget.simulation.scorers import ModelScorer, candidate_table, pair_chunks
from unitarget.evaluation.segments import SEGMENTS
from unitarget.synth import World

runner = CliRunner()
TINY = SimulateConfig(markets=6, days=3, opportunities_per_day=1_500, bootstrap=100, permutations=100)
TINY_TOML = """
[simulate]
days = 3
opportunities_per_day = 1500
bootstrap = 100
permutations = 100
"""


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory, tiny_log_path, tiny_log, fast_config_module) -> Path:
    """A reproduction-like layout: data/world and runs/{promo-baseline, unified, ads-stream-only}."""
    root = tmp_path_factory.mktemp("ab")
    (root / "data").symlink_to(tiny_log_path.parent, target_is_directory=True)
    for preset in ("promo-baseline", "unified", "ads-stream-only"):
        train(tiny_log, root / "runs" / preset, apply_preset(fast_config_module, preset))
    return root


@pytest.fixture(scope="module")
def fast_config_module():
    from unitarget.config import Config

    return merge(Config(), {
        "model": {"hidden": [16], "tower_hidden": [8], "embedding_dim": 4},
        "train": {"batch_size": 512, "max_epochs": 1, "valid_days": 4, "threads": 1},
        "optim": {"warmup_steps": 5},
    })


def test_parse_arm():
    assert parse_arm("oracle") == ArmSpec("oracle", "oracle")
    assert parse_arm("best=random") == ArmSpec("best", "random")
    assert parse_arm("base=runs/x") == ArmSpec("base", Path("runs/x"))
    for bad in ("runs/x", "=runs/x", "base="):
        with pytest.raises(UnitargetError):
            parse_arm(bad)


def test_candidate_rows_follow_the_data_contract(results_dir):
    world = World.load(results_dir / "data" / "world")
    market = build_marketplace(world, TINY)
    _, placements, ts_us = next(pair_chunks(world, market, 500))
    table = candidate_table(world, placements, market.campaigns.creative_campaign[placements.creative], ts_us)
    from unitarget.config import Config

    load_log(table, Config(), require_labels=False)  # raises if the contract is broken
    assert table.num_rows == 500 and table.column("stream").null_count == 500


def test_model_arms_score_with_their_ads_stream_head(results_dir):
    from unitarget.pipeline import load_model

    baseline = ModelScorer(load_model(results_dir / "runs" / "promo-baseline"), {"stream": 1.0})
    unified = ModelScorer(load_model(results_dir / "runs" / "unified"), {"stream": 1.0, "click": 0.5})
    assert baseline.weights.tolist() == [1.0, 0.0, 0.0, 0.0]  # promo_stream: the Fig. 2A cold start
    assert unified.weights.tolist() == [0.0, 1.0, 0.5, 0.0, 0.0]  # ad_stream + 0.5 click
    with pytest.raises(UnitargetError, match="follow"):
        ModelScorer(load_model(results_dir / "runs" / "ads-stream-only"), {"follow": 1.0})
    world = World.load(results_dir / "data" / "world")
    market = build_marketplace(world, TINY)
    values = baseline.values(world, market)
    has = market.opportunities.candidates >= 0
    assert np.all(np.isfinite(values[has])) and np.all(np.isnan(values[~has]))
    assert np.all((values[has] > 0) & (values[has] < 1))


def test_simulate_command_writes_markdown_csv_and_chart(results_dir, tmp_path):
    (tmp_path / "sim.toml").write_text(TINY_TOML)
    out = tmp_path / "ab"
    result = runner.invoke(app, [
        "simulate", "--world", str(results_dir / "data"),
        "--arm", f"base={results_dir / 'runs' / 'promo-baseline'}",
        "--arm", "oracle", "--arm", "random", "--out", str(out), "--markets", "6", "--seed", "2",
        "--config", str(tmp_path / "sim.toml"),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    for name in ("AB.md", "ab_metrics.csv", "ab_counts.csv", "ab_tiers.png", "simulation.json"):
        assert (out / name).is_file(), name
    rows = list(csv.DictReader((out / "ab_metrics.csv").open()))
    assert len(rows) == 3 * len(SEGMENTS) * len(METRICS)
    oracle_all = {r["metric"]: r for r in rows if r["arm"] == "oracle" and r["segment"] == "all"}
    assert float(oracle_all["ecps"]["value"]) == pytest.approx(
        float(oracle_all["spend"]["value"]) / float(oracle_all["streams"]["value"]), rel=1e-5)
    text = (out / "AB.md").read_text()
    assert "Control: **base**" in text and "## By popularity tier" in text


def test_simulate_command_rejects_a_bad_arm_with_one_message(results_dir, tmp_path):
    result = runner.invoke(app, ["simulate", "--world", str(results_dir / "data"), "--arm", "nonsense",
                                 "--out", str(tmp_path / "x")])
    assert result.exit_code == 2
    assert "NAME=RUN" in result.output


def test_reproduction_section_puts_table2_beside_the_paper(results_dir):
    runs = results_dir / "runs"
    result = run_paper_ab(results_dir, runs / "promo-baseline", runs / "unified", TINY, log=lambda _: None)
    assert result.arms == ("promo-baseline", "unified", "oracle", "random")
    assert (results_dir / "ab" / "AB.md").is_file() and (results_dir / "ab" / "ab_tiers.png").is_file()
    section = reproduction_section(result)
    assert "paper: unified vs baseline | +24% | −22% | +10% | +27%" in section
    assert "Agreement with Table 2" in section
    assert "![Relative i2s and eCPS change by tier](ab/ab_tiers.png)" in section
    assert section.count("| Less-streamed creators |") == 4  # paper, unified, oracle, random
