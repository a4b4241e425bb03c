"""The main job end to end on a tiny world: every section of REPORT.md is written from the run."""

from unitarget.config import merge
from unitarget.reproduce import reproduce
from unitarget.synth import WorldParams


def test_reproduce_writes_the_report_with_table1_and_charts(tmp_path, fast_config):
    config = merge(fast_config, {"train": {"max_epochs": 1}, "evaluation": {"test_days": 4}})
    params = WorldParams(n_users=400, n_shows=80, n_impressions=16_000, n_days=18, seed=2)
    report = reproduce(tmp_path, params, config)
    text = report.read_text()
    assert "## Table 1" in text
    for setup in ("Promo Stream head-only", "Ads Stream head-only", "Ads Stream + ANC heads", "Promo + Ads 5-task MTL"):
        assert setup in text
    assert "agrees**" in text or "disagrees**" in text
    assert "(linear baseline) |" in text and "### Against the linear baseline" in text
    assert "beats (" in text or "does not beat" in text
    assert "natural mix" in text
    assert "### Information limits by tier" in text and text.count("| informed oracle AP | oracle AP |") == 2
    assert "Promo + Ads 5-task MTL / oracle" in text and "% of what the data allow" in text
    for chart in ("tier_ap_ads_stream.png", "tier_ap_promotions_stream.png", "tier_gain_ads_stream.png"):
        assert (tmp_path / chart).read_bytes()[:4] == b"\x89PNG"
        assert chart in text


def test_full_mode_adds_the_ablations_and_reuses_the_table1_runs(tmp_path, fast_config):
    config = merge(fast_config, {"train": {"max_epochs": 1}, "evaluation": {"test_days": 4}})
    params = WorldParams(n_users=400, n_shows=80, n_impressions=16_000, n_days=18, seed=2)
    messages: list[str] = []
    text = reproduce(tmp_path, params, config, full=True, seeds=1, log=messages.append).read_text()
    assert "## Ablations" in text and "learning_curve.png" in text
    reused = {m.split(":")[1].split()[0] for m in messages if "reuses the identical run" in m}
    assert reused == {"promo-baseline", "promo-stream-only", "ads-stream-only", "ads-anc", "unified", "natural-mix",
                      "paper", "logreg"}
    assert not any(m.startswith("seed 0: training unified") for m in messages)
