"""Which head serves a label on a source and format, and which rows count for a head."""

from unitarget.config import Config, merge
from unitarget.evaluation.heads import channel_targets, head_targets, objective_weights, selection_targets, serving_head
from unitarget.presets import apply_preset


def test_stream_is_served_by_the_mapped_head_then_the_other_sources_then_none():
    unified = apply_preset(Config(), "unified")
    assert serving_head(unified, "stream", source="ads") == "ad_stream"
    baseline = apply_preset(Config(), "promo-baseline")
    assert serving_head(baseline, "stream", source="ads") == "promo_stream"  # Fig. 2A
    clicks = merge(Config(), {"tasks": [{"name": "click", "label": "click", "sources": ["ads"]}]})
    assert serving_head(clicks, "stream", source="ads") is None
    assert [t.name for t in channel_targets(clicks)] == ["click"]  # no stream column to fill


def test_other_labels_prefer_a_head_that_learns_from_the_source():
    config = merge(Config(), {"tasks": [{"name": "promo_click", "label": "click", "sources": ["promotions"]},
                                        {"name": "ad_click", "label": "click", "sources": ["ads"]}]})
    assert serving_head(config, "click", source="ads") == "ad_click"
    assert serving_head(config, "click", source="promotions") == "promo_click"
    assert objective_weights(config, {"click": 2.0}, "ads") == {"ad_click": 2.0}


def test_a_head_counts_on_the_rows_that_may_update_it():
    config = merge(Config(), {"tasks": [{"name": "ad_stream", "label": "stream", "sources": ["ads", "promotions"]},
                                        {"name": "click_audio", "label": "click", "sources": ["ads"],
                                         "formats": ["audio"]}]})
    rows = {t.name: t for t in head_targets(config)}
    assert (rows["ad_stream"].source, rows["ad_stream"].formats) == (None, None)  # every source
    assert (rows["click_audio"].source, rows["click_audio"].formats) == ("ads", ("audio",))


def test_model_selection_without_a_stream_head_scores_every_head_on_its_rows():
    config = merge(Config(), {"tasks": [{"name": "click_audio", "label": "click", "sources": ["ads"],
                                         "formats": ["audio"]},
                                        {"name": "like", "label": "like", "sources": ["ads"]}]})
    targets = {t.name: t for t in selection_targets(config)}
    assert set(targets) == {"ap_click_audio", "ap_like"}
    assert targets["ap_click_audio"].formats == ("audio",) and targets["ap_like"].source == "ads"
    unified = selection_targets(Config())
    assert [(t.name, t.source) for t in unified] == [("ap_ads_ad_stream", "ads"),
                                                     ("ap_promotions_promo_stream", "promotions")]


def test_model_selection_on_every_head_when_asked_unless_a_selection_task_is_named():
    every = merge(Config(), {"evaluation": {"selection_heads": "all"}})
    assert [t.task for t in selection_targets(every)] == [t.name for t in every.tasks]
    fine_tuning = merge(every, {"evaluation": {"selection_task": "click"}})
    assert {t.task for t in selection_targets(fine_tuning)} == {"click"}
