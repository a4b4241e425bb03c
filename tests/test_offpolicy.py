"""Off-policy evaluation: the estimators by hand, the known-policy check, a synthetic bandit with a
known truth, counterfactual candidate rows, the propensity column's validation and the ope command."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from typer.testing import CliRunner

from unitarget import contract
from unitarget.cli import app
from unitarget.config import Config, merge
from unitarget.errors import ContractError, UnitargetError
from unitarget.evaluation.candidates import candidate_sets, counterfactual_rows, item_columns
from unitarget.evaluation.offpolicy import (doubly_robust, effective_sample_size, greedy_policy, ips, on_policy, snips,
                                            softmax_policy, uniform_policy)
from unitarget.io import atomic_write_parquet
from unitarget.pipeline import train
from unitarget.validation import validate_log

# ----------------------------------------------------------------------------------------- estimators

R = np.array([1.0, 0.0, 1.0, 0.0])
P = np.array([0.5, 0.5, 0.25, 0.25])
PI = np.array([1.0, 0.0, 0.5, 1.0])  # weights w = PI / P = [2, 0, 2, 4]


def test_estimators_on_a_hand_computed_example():
    # IPS   = (2·1 + 0·0 + 2·1 + 4·0) / 4 = 4 / 4 = 1.0
    # SNIPS = (2·1 + 0·0 + 2·1 + 4·0) / (2 + 0 + 2 + 4) = 4 / 8 = 0.5
    # DR with q̂(x, a_i) = 0.5 and Σ_a π q̂ = 0.4 everywhere:
    #   0.4 + 2·(1−0.5) = 1.4;  0.4 + 0 = 0.4;  0.4 + 2·(1−0.5) = 1.4;  0.4 + 4·(0−0.5) = −1.6
    #   mean = (1.4 + 0.4 + 1.4 − 1.6) / 4 = 1.6 / 4 = 0.4
    # ESS = (2 + 0 + 2 + 4)² / (4 + 0 + 4 + 16) = 64 / 24
    assert ips(R, P, PI).estimate == pytest.approx(1.0)
    assert snips(R, P, PI).estimate == pytest.approx(0.5)
    dr = doubly_robust(R, P, PI, np.full(4, 0.5), np.full(4, 0.4))
    assert dr.estimate == pytest.approx(0.4)
    assert dr.ess == pytest.approx(64 / 24) == effective_sample_size(PI / P)
    assert dr.n == 4 and dr.low <= dr.high
    assert on_policy(R).estimate == 0.5 and on_policy(R).ess == 4


def test_the_bootstrap_is_seeded_and_brackets_the_estimate():
    rng = np.random.default_rng(1)
    r = rng.binomial(1, 0.3, 500).astype(float)
    a, b = on_policy(r, seed=3), on_policy(r, seed=3)
    assert a == b and a.low <= a.estimate <= a.high
    assert on_policy(r, seed=4) != a
    assert on_policy(r, seed=3, n_resamples=50).n == 500


@pytest.mark.parametrize("propensities, message", [
    (np.array([0.5, 0.0, 0.5, 0.5]), r"propensities: 1 values outside \(0, 1\]; first rows \[1\]"),
    (np.array([0.5, 0.5, 1.5, 0.5]), r"outside \(0, 1\]; first rows \[2\]"),
    (np.array([0.5, 0.5, 0.5]), "propensities has 3 values but there are 4 rewards"),
    (np.array([0.5, np.nan, 0.5, 0.5]), "propensities: 1 NaN or infinite"),
])
def test_bad_inputs_are_clear_errors(propensities, message):
    with pytest.raises(UnitargetError, match=message):
        ips(R, propensities, PI)


def test_empty_input_and_a_bad_target_are_errors():
    with pytest.raises(UnitargetError, match="empty"):
        snips(np.array([]), np.array([]), np.array([]))
    with pytest.raises(UnitargetError, match=r"target probabilities: 1 values outside \[0, 1\]"):
        ips(R, P, np.array([1.0, 0.0, 2.0, 0.0]))
    with pytest.raises(UnitargetError, match="q_target has 2 values"):
        doubly_robust(R, P, PI, np.zeros(4), np.zeros(2))


def test_policies_from_scores():
    greedy = greedy_policy(np.array([[1.0, 3.0, 3.0], [2.0, 1.0, 0.0]]))
    np.testing.assert_allclose(greedy, [[0.0, 0.5, 0.5], [1.0, 0.0, 0.0]])  # a tie is split evenly
    scores = np.array([[0.1, 0.2, 0.4]])
    np.testing.assert_allclose(softmax_policy(scores, 1e-4), [[0.0, 0.0, 1.0]], atol=1e-9)
    assert softmax_policy(scores, 1.0).sum() == pytest.approx(1.0)
    np.testing.assert_allclose(uniform_policy(2, 4), np.full((2, 4), 0.25))
    with pytest.raises(UnitargetError, match="temperature"):
        softmax_policy(scores, 0.0)


# ------------------------------------------------------------------- known policy and synthetic bandit


def _bandit(n: int = 20_000, seed: int = 7):
    """Two contexts, five actions with known click probabilities, uniform logging."""
    truth = np.array([[0.02, 0.05, 0.10, 0.03, 0.08], [0.09, 0.01, 0.04, 0.12, 0.02]])
    rng = np.random.default_rng(seed)
    x, a = rng.integers(0, 2, n), rng.integers(0, 5, n)
    r = rng.binomial(1, truth[x, a]).astype(float)
    return truth, x, a, r, np.full(n, 1 / 5)


def test_the_uniform_policy_on_its_own_log_recovers_the_logged_click_rate():
    truth, x, a, r, p = _bandit()
    pi = np.full(r.size, 1 / 5)
    q = truth[x, a] + 0.01  # a slightly wrong reward model
    logged = r.mean()
    assert ips(r, p, pi).estimate == logged  # weights are exactly 1
    for estimate in (snips(r, p, pi), doubly_robust(r, p, pi, q, truth[x].mean(axis=1) + 0.01)):
        assert estimate.low <= logged <= estimate.high


def test_estimators_find_a_deterministic_policys_true_value():
    truth, x, a, r, p = _bandit()
    best = truth.argmax(axis=1)  # the target policy: the best action of each context
    value = truth[np.arange(2), best].mean()  # contexts are equally likely: (0.10 + 0.12) / 2
    pi = (a == best[x]).astype(float)
    q_logged, q_target = truth[x, a], truth[x, best[x]]  # a good reward model
    estimates = {"ips": ips(r, p, pi), "snips": snips(r, p, pi),
                 "dr": doubly_robust(r, p, pi, q_logged, q_target)}
    for name, e in estimates.items():
        assert e.low <= value <= e.high, name
    width = {name: e.high - e.low for name, e in estimates.items()}
    assert width["dr"] < width["ips"]
    assert estimates["ips"].ess == pytest.approx(pi.sum())


# ------------------------------------------------------------------------------- candidates, contract


def _day(d: int) -> dt.datetime:
    return dt.datetime(2026, 1, d, tzinfo=dt.timezone.utc)


def _tiny_contract_table() -> pa.Table:
    return pa.table({
        "impression_id": ["i0", "i1", "i2", "i3", "i4"],
        "ts": pa.array([_day(1), _day(2), _day(3), _day(4), _day(5)], pa.timestamp("us", tz="UTC")),
        "source": ["ads"] * 5,
        "user_id": ["u0", "u1", "u2", "u3", "u4"],
        "show_id": ["b", "a", "b", "c", "a"],
        "stream": pa.array([0, 1, 0, 0, 1], pa.int8()),
        "device": ["ios", "web", "ios", "tv", "web"],
        "show_genre": ["old", "comedy", "news", "true crime", "comedy2"],
        "campaign_id": ["men", "men", "men", "women", "men"],
        "slot": ["1", "2", "3", "1", "2"],
    })


def test_item_columns_are_content_and_creative_but_not_the_slot():
    names = item_columns(contract.STANDARD_FEATURES)
    assert names[0] == "show_id" and "show_genre" in names and "creative_id" in names
    assert "slot" not in names and "user_id" not in names and "device" not in names


def test_candidates_are_the_campaigns_shows_in_their_newest_rows():
    table = _tiny_contract_table()
    sets = candidate_sets(table, item_columns(contract.STANDARD_FEATURES))
    assert sorted(sets.items) == ["men", "women"]
    men = sets.items["men"]
    assert men.column("show_id").to_pylist() == ["a", "b"]
    assert men.column("show_genre").to_pylist() == ["comedy2", "news"]  # each show's most recent row
    assert sets.items["women"].column("show_id").to_pylist() == ["c"]
    assert sets.logged.tolist() == [1, 0, 1, 0, 0]
    assert sets.impressions_of("men").tolist() == [0, 1, 2, 4]
    rows = counterfactual_rows(table.take([0, 1]), men)
    assert rows.num_rows == 4 and rows.column_names == table.column_names
    assert rows.column("user_id").to_pylist() == ["u0", "u0", "u1", "u1"]
    assert rows.column("slot").to_pylist() == ["1", "1", "2", "2"]  # the impression's position
    assert rows.column("show_id").to_pylist() == ["a", "b", "a", "b"]
    assert rows.column("show_genre").to_pylist() == ["comedy2", "news", "comedy2", "news"]
    no_campaign = candidate_sets(table.drop_columns(["campaign_id"]), ["show_id"])
    assert list(no_campaign.items) == [""] and no_campaign.items[""].num_rows == 3


@pytest.mark.parametrize("values, message", [
    ([0.5, float("nan"), 1.0, 0.5, 0.5], "column 'propensity': 1 row has a NaN or infinite number; row 1"),
    ([0.5, 0.5, 0.0, 1.5, 0.5], r"column 'propensity': 2 rows have a propensity outside \(0, 1\]; first rows 2, 3"),
])
def test_validation_checks_the_propensity_column_if_present(values, message):
    table = _tiny_contract_table()
    validate_log(table)
    validate_log(table.append_column("propensity", pa.array([0.5, None, 1.0, 0.5, 0.5], pa.float64())))
    with pytest.raises(ContractError, match=message) as err:
        validate_log(table.append_column("propensity", pa.array(values, pa.float64())))
    assert err.value.column == "propensity"


# --------------------------------------------------------------------------------------- the command


@pytest.fixture(scope="module")
def trained_run(tiny_log, tmp_path_factory):
    config = merge(Config(), {
        "model": {"hidden": [16], "tower_hidden": [8], "embedding_dim": 4},
        "train": {"batch_size": 1024, "max_epochs": 1, "patience": 1, "valid_days": 4, "threads": 1},
        "optim": {"warmup_steps": 5},
    })
    run = tmp_path_factory.mktemp("ope") / "run"
    train(tiny_log, run, config)
    return run


def _ope_log(tiny_log: pa.Table, n_ads: int = 600) -> pa.Table:
    """Some ads impressions, logged uniformly over the shows they show (one candidate set: no
    campaign_id), and some promotions without a propensity."""
    by_source = {s: tiny_log.filter(pc.equal(tiny_log.column("source"), s)) for s in ("ads", "promotions")}
    ads, promotions = by_source["ads"].slice(0, n_ads), by_source["promotions"].slice(0, 200)
    k = len(pc.unique(ads.column("show_id")))
    log = pa.concat_tables([ads, promotions]).drop_columns(["campaign_id"])
    return log.append_column("propensity", pa.array([1 / k] * n_ads + [None] * 200, pa.float64()))


def test_the_ope_command_writes_the_estimates(trained_run, tiny_log, tmp_path, one_thread):
    data, out = tmp_path / "log.parquet", tmp_path / "report"
    log = _ope_log(tiny_log)
    atomic_write_parquet(log, data)
    result = CliRunner().invoke(app, ["ope", "--model", str(trained_run), "--data", str(data), "--out", str(out),
                                      "--resamples", "200", "--temperature", "0.5"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "ope.json").read_text())
    assert report["impressions"] == 600 and report["head"] == "ad_stream"
    assert set(report["policies"]) == {"model, greedy", "uniform random", "model, softmax (T=0.5)"}
    uniform = report["policies"]["uniform random"]["ips"]
    assert uniform["estimate"] == pytest.approx(report["logged"]["ads"]["estimate"])  # the known-policy check
    assert set(report["logged"]) == {"ads", "promotions"}
    for estimator in ("ips", "snips", "dr"):
        assert report["policies"]["model, greedy"][estimator]["n"] == 600
    assert "| model, greedy | DR |" in (out / "OPE.md").read_text()


def test_the_ope_command_refuses_logs_it_cannot_evaluate(trained_run, tiny_log, tmp_path, one_thread):
    log = _ope_log(tiny_log, n_ads=50)
    cases = {
        "no_propensity": (log.drop_columns(["propensity"]), "has no 'propensity' column"),
        "varying": (log.set_column(log.column_names.index("propensity"), "propensity",
                                   pa.array([0.1, 0.2] * 25 + [None] * 200, pa.float64())),
                    "non-constant on source 'ads'"),
    }
    for name, (table, message) in cases.items():
        data = tmp_path / f"{name}.parquet"
        atomic_write_parquet(table, data)
        result = CliRunner().invoke(app, ["ope", "--model", str(trained_run), "--data", str(data)])
        assert result.exit_code == 2, result.output
        assert message in " ".join(result.output.split())
