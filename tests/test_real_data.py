"""The real-data study's parts: bootstrap intervals, per-channel AP with intervals, the tables."""

import numpy as np

from unitarget.config import merge
from unitarget.evaluation.bootstrap import bootstrap_interval
from unitarget.reports.real_data import scores_table, verdicts
from unitarget.studies.real_data import run_real_data_study


def test_a_bootstrap_interval_of_the_mean_covers_the_normal_approximation():
    values = np.random.default_rng(0).normal(1.0, 2.0, 4000)
    interval = bootstrap_interval(lambda rows: values[rows].mean(), len(values), resamples=400, seed=1)
    half_width = 1.96 * values.std() / np.sqrt(len(values))
    assert interval.low < values.mean() < interval.high
    assert abs((interval.high - interval.low) / 2 - half_width) < 0.15 * half_width


def test_resamples_without_a_positive_are_left_out_and_none_left_gives_nan():
    interval = bootstrap_interval(lambda rows: float("nan"), 10, resamples=20)
    assert np.isnan(interval.low) and np.isnan(interval.high)


def test_the_study_scores_every_setup_on_the_same_rows_and_reuses_finished_runs(tiny_log, tmp_path, fast_config):
    config = merge(fast_config, {"train": {"max_epochs": 1}, "evaluation": {"test_days": 4}})
    messages: list[str] = []
    result = run_real_data_study(tiny_log, tmp_path, config, ["ads-stream-only", "unified"], dataset="tiny",
                                 resamples=50, log=messages.append)
    ads = [result.scores[s]["ads_stream"] for s in ("ads-stream-only", "unified")]
    assert ads[0].rows == ads[1].rows and ads[0].positives == ads[1].positives > 0
    assert all(s.ap.low <= s.ap.estimate <= s.ap.high for s in ads)
    assert "promotions_stream" in result.scores["unified"]
    table = scores_table(result)
    assert "Ads AP" in table and "test rows / positives" in table
    assert any("`unified` vs `ads-stream-only`" in line for line in verdicts(result, others=("ads-stream-only",)))
    again = run_real_data_study(tiny_log, tmp_path, config, ["unified"], dataset="tiny", resamples=50,
                                log=messages.append)
    assert "tiny: reusing unified" in messages
    assert again.scores["unified"]["ads_stream"].ap == result.scores["unified"]["ads_stream"].ap


def test_the_report_runs_both_adapters_trains_every_setup_and_keeps_the_docs_own_part(tmp_path):
    from dataclasses import replace

    from tests.test_datasets import HILLSTROM_SLICE, HILLSTROM_SLICE_SHA256, OBD_SLICE, OBD_SLICE_SHA256
    from unitarget.config import Config
    from unitarget.experiments.real_data import DATASETS, GENERATED, write_real_data_report

    hashes = {"open-bandit": OBD_SLICE_SHA256, "hillstrom": HILLSTROM_SLICE_SHA256}
    datasets = [replace(d, pinned=replace(d.pinned, sha256=hashes[d.name])) for d in DATASETS]
    doc = tmp_path / "real-data.md"
    doc.write_text("# Real data\n\nHand-written adapter notes.\n\n" + GENERATED + "\n\nold results\n")
    config = merge(Config(), {"train": {"max_epochs": 1}})
    report = write_real_data_report(tmp_path / "out", config, packages={"open-bandit": OBD_SLICE,
                                                                        "hillstrom": HILLSTROM_SLICE},
                                    resamples=20, doc=doc, datasets=datasets)
    text = report.read_text()
    for needed in ("## open-bandit", "## hillstrom", "`logreg`", "random ranking", "Off-policy click rate",
                   "greedy on `unified`'s `ad_stream`", "logged policy of `ads`"):
        assert needed in text
    written = doc.read_text()
    assert written.startswith("# Real data\n\nHand-written adapter notes.") and "old results" not in written
    assert written.count(GENERATED) == 1 and written.endswith(text)
