"""Segment evaluation: tier bookkeeping, source filtering, oracle AP and serialisation."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from unitarget.contract import tier_of
from unitarget.evaluation import (
    SEGMENTS,
    EvalTarget,
    EvaluationResult,
    evaluate_segments,
    segment_masks,
)

TARGETS = (
    EvalTarget("promotions_stream", "promo_stream", "stream", "promotions"),
    EvalTarget("ads_stream", "ad_stream", "stream", "ads"),
    EvalTarget("click", "click", "click", None),
)


def _world(n: int = 20_000, seed: int = 0) -> dict:
    """Synthetic impressions: true probabilities, labels drawn from them, noisy predictions."""
    rng = np.random.default_rng(seed)
    tier = tier_of(rng.choice([2_000_000, 300_000, 9_000, 2_000, 500, 50, 3, 0], size=n))
    source = rng.choice(np.array(["ads", "promotions"], dtype=object), size=n)
    true_stream = 1 / (1 + np.exp(-(rng.normal(size=n) * 1.5 - 3.0)))
    true_click = 1 / (1 + np.exp(-(rng.normal(size=n) - 2.0)))
    stream = (rng.random(n) < true_stream).astype(float)
    click = (rng.random(n) < true_click).astype(float)
    click[source == "ads"] = np.nan  # not observed on ads
    true_click_obs = np.where(np.isnan(click), np.nan, true_click)

    def noisy(q: np.ndarray) -> np.ndarray:
        return 1 / (1 + np.exp(-(np.log(q / (1 - q)) + rng.normal(scale=1.5, size=n))))

    return {
        "predictions": {
            "promo_stream": noisy(true_stream),
            "ad_stream": noisy(true_stream),
            "click": noisy(true_click),
        },
        "labels": {"stream": stream, "click": click},
        "true_probabilities": {"stream": true_stream, "click": true_click_obs},
        "source": source,
        "tier": tier,
    }


@pytest.fixture(scope="module")
def world() -> dict:
    return _world()


@pytest.fixture(scope="module")
def result(world: dict) -> EvaluationResult:
    return evaluate_segments(targets=TARGETS, **world)


def test_rows_cover_every_target_and_segment(result: EvaluationResult) -> None:
    assert len(result.rows) == len(TARGETS) * len(SEGMENTS)
    assert result.targets == tuple(t.name for t in TARGETS)
    assert [r.segment for r in result.rows[: len(SEGMENTS)]] == list(SEGMENTS)


def test_tier_counts_add_up(result: EvaluationResult) -> None:
    for target in result.targets:
        tiers = [result.row(target, f"tier_{t}") for t in range(8)]
        total = result.row(target, "all")
        assert sum(r.n for r in tiers) == total.n
        assert sum(r.n_pos for r in tiers) == total.n_pos
        less, high = result.row(target, "less_streamed"), result.row(target, "high_stream")
        assert less.n == sum(r.n for r in tiers[3:])
        assert less.n_pos == sum(r.n_pos for r in tiers[3:])
        assert high.n == sum(r.n for r in tiers[:3])
        assert less.n + high.n == total.n


def test_source_filter_and_null_labels(world: dict, result: EvaluationResult) -> None:
    promo = world["source"] == "promotions"
    y, p = world["labels"]["stream"][promo], world["predictions"]["promo_stream"][promo]
    row = result.row("promotions_stream")
    assert row.n == promo.sum() and row.n_pos == y.sum()
    assert row.ap == pytest.approx(average_precision_score(y, p), abs=1e-6)
    # click is null on ads: only promotion rows count although the target spans all sources
    assert result.row("click").n == promo.sum()


def test_segment_ap_matches_direct_computation(world: dict, result: EvaluationResult) -> None:
    mask = (world["source"] == "ads") & (world["tier"] >= 3)
    y, p = world["labels"]["stream"][mask], world["predictions"]["ad_stream"][mask]
    assert result.ap("ads_stream", "less_streamed") == pytest.approx(average_precision_score(y, p), abs=1e-6)


def test_oracle_ap_beats_noisy_predictions(result: EvaluationResult) -> None:
    for target in result.targets:
        for segment in ("all", "less_streamed", "high_stream"):
            row = result.row(target, segment)
            assert row.oracle_ap > row.ap


def test_oracle_nan_without_true_probabilities(world: dict) -> None:
    args = {k: v for k, v in world.items() if k != "true_probabilities"}
    res = evaluate_segments(targets=TARGETS[:1], **args)
    assert all(math.isnan(r.oracle_ap) for r in res.rows)


def test_empty_tier_gives_nan_ap_and_zero_counts() -> None:
    n = 1000
    rng = np.random.default_rng(1)
    tier = rng.integers(0, 7, size=n)  # no tier-7 rows at all
    tier[:50] = 5
    y = (rng.random(n) < 0.2).astype(float)
    y[tier == 5] = 0.0  # tier 5 has rows but no positives
    res = evaluate_segments(
        {"t": rng.random(n)}, {"stream": y}, np.full(n, "ads"), tier, [EvalTarget("x", "t", "stream", None)]
    )
    empty, no_pos = res.row("x", "tier_7"), res.row("x", "tier_5")
    assert (empty.n, empty.n_pos) == (0, 0) and math.isnan(empty.ap) and math.isnan(empty.log_loss)
    assert no_pos.n > 0 and no_pos.n_pos == 0 and math.isnan(no_pos.ap) and math.isnan(no_pos.roc_auc)


def test_round_trip_through_json(result: EvaluationResult) -> None:
    text = json.dumps(result.to_dict(), allow_nan=False)
    back = EvaluationResult.from_dict(json.loads(text))
    assert back.to_dict() == result.to_dict()
    assert back.ap("ads_stream", "tier_3") == result.ap("ads_stream", "tier_3")
    with pytest.raises(ValueError, match="format"):
        EvaluationResult.from_dict({"rows": []})


def test_nan_serialises_as_none() -> None:
    res = evaluate_segments(
        {"t": np.array([0.2, 0.4])}, {"stream": np.array([0.0, 0.0])}, np.array(["ads", "ads"]),
        np.array([0, 7]), [EvalTarget("x", "t", "stream", None)],
    )
    row = res.to_dict()["rows"][0]
    assert row["ap"] is None and row["n_pos"] == 0
    assert math.isnan(EvaluationResult.from_dict(res.to_dict()).ap("x"))


def test_renderings(result: EvaluationResult) -> None:
    md = result.to_markdown()
    assert md.count("| segment | AP | oracle AP | AP / oracle | ROC-AUC | log loss | calibration | n | n_pos |") == 3
    assert "less-streamed (tiers 3–7)" in md and "tier 0 (≥1M)" in md
    from rich.console import Console

    console = Console(record=True, width=160)
    console.print(result.to_rich_tables())
    assert "promotions_stream" in console.export_text()


def test_segment_masks_and_bad_tier() -> None:
    masks = segment_masks(np.array([0, 2, 3, 7]))
    assert masks.shape == (len(SEGMENTS), 4)
    assert masks[SEGMENTS.index("less_streamed")].tolist() == [False, False, True, True]
    assert masks[SEGMENTS.index("high_stream")].tolist() == [True, True, False, False]
    with pytest.raises(ValueError, match="0..7"):
        segment_masks(np.array([0, 8]))


def test_unknown_task_is_named(world: dict) -> None:
    with pytest.raises(KeyError, match="like"):
        evaluate_segments(targets=[EvalTarget("like", "like", "stream", None)], **world)


def test_oracle_ratio_and_informed_oracle_per_segment(world: dict) -> None:
    """The ratio column is AP / oracle AP on each segment; an informed oracle gets its own AP column."""
    informed = {"stream": np.clip(world["true_probabilities"]["stream"] * 0.8 + 0.01, 0, 1)}
    res = evaluate_segments(world["predictions"], world["labels"], world["source"], world["tier"], TARGETS,
                            world["true_probabilities"], informed_probabilities=informed)
    row = res.row("ads_stream", "tier_3")
    assert row.oracle_ratio == pytest.approx(row.ap / row.oracle_ap)
    ads = world["source"] == "ads"
    in_tier = ads & (world["tier"] == 3)
    assert row.informed_oracle_ap == pytest.approx(
        average_precision_score(world["labels"]["stream"][in_tier], informed["stream"][in_tier]))
    assert math.isnan(res.row("click", "all").informed_oracle_ap)  # no informed probability for click
    header = res.to_markdown().splitlines()[4]
    assert header.startswith("| segment | AP | informed oracle AP | oracle AP | AP / oracle |")
    assert EvaluationResult.from_dict(json.loads(json.dumps(res.to_dict()))).to_dict() == res.to_dict()


def test_a_real_log_has_no_oracle_columns(world: dict) -> None:
    res = evaluate_segments(world["predictions"], world["labels"], world["source"], world["tier"], TARGETS)
    md = res.to_markdown()
    assert "oracle" not in md
    assert md.count("| segment | AP | ROC-AUC | log loss | calibration | n | n_pos |") == 3


def test_results_written_before_the_informed_oracle_still_load(result: EvaluationResult) -> None:
    data = result.to_dict()
    for row in data["rows"]:
        del row["informed_oracle_ap"]
    assert EvaluationResult.from_dict(data).to_dict() == result.to_dict()


def test_the_baseline_row_and_verdict(world: dict) -> None:
    """A baseline's evaluation on the same rows adds its row to each table and says, head by head,
    whether the model beats it; it survives the JSON round trip."""
    args = (world["labels"], world["source"], world["tier"], TARGETS, world["true_probabilities"])
    model = evaluate_segments(world["predictions"], *args)
    perfect_click = np.where(world["labels"]["click"] == 1, 0.99, 0.01)  # the baseline knows every click
    baseline = evaluate_segments({**world["predictions"], "click": perfect_click}, *args)
    res = model.with_baseline(baseline, "logreg")
    assert res.beats_baseline("click") is False and res.beats_baseline("ads_stream") is False  # equal AP: no
    md = res.to_markdown()
    assert md.count("| logreg (all) |") == 3
    assert "**The model does not beat logreg on click**" in md
    assert EvaluationResult.from_dict(json.loads(json.dumps(res.to_dict()))).to_dict() == res.to_dict()
    worse = evaluate_segments({k: np.full_like(v, 0.5) for k, v in world["predictions"].items()}, *args)
    assert model.with_baseline(worse, "flat").beats_baseline("promotions_stream") is True
    assert "The model beats flat on promotions_stream" in model.with_baseline(worse, "flat").to_markdown()
