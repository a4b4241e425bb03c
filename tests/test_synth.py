"""The synthetic world: determinism, contract types, structure, and calibration of its labels."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from unitarget.contract import LABELS, N_TIERS, REQUIRED_COLUMNS, STANDARD_FEATURES, tier_of
from unitarget.contract import true_probability_column
from unitarget.synth import NEVER, Placements, World, WorldParams, generate_log, iter_log_tables, sample_log, vocab
from unitarget.synth import dataset, write_synthetic_dataset

SMALL = WorldParams(n_users=1_500, n_shows=200, n_impressions=20_000, n_days=21, seed=3)
MID = WorldParams(n_users=10_000, n_shows=4_000, n_impressions=200_000, n_days=28, seed=11)

STRING, LIST = pa.string(), pa.list_(pa.string())
EXPECTED_TYPES = {
    "impression_id": STRING, "ts": pa.timestamp("us", tz="UTC"), "source": STRING,
    "user_id": STRING, "show_id": STRING,
    "stream": pa.int8(), "click": pa.int8(), "like": pa.int8(), "follow": pa.int8(),
    "user_country": STRING, "user_age_bucket": STRING,
    "user_history_shows": LIST, "user_followed_shows": LIST,
    "episode_id": STRING, "show_genre": STRING, "show_topics": LIST, "show_publisher": STRING,
    "show_streams_30d": pa.int64(), "show_age_days": pa.int32(),
    "surface": STRING, "device": STRING, "format": STRING, "campaign_id": STRING, "creative_id": STRING,
    "slot": STRING, "layout": STRING,
    **{true_probability_column(label): pa.float64() for label in LABELS},
}  # fmt: skip


@pytest.fixture(scope="module")
def small_world() -> World:
    return World.generate(SMALL)


@pytest.fixture(scope="module")
def small_table(small_world: World) -> pa.Table:
    return generate_log(small_world)


@pytest.fixture(scope="module")
def mid_world() -> World:
    return World.generate(MID)


@pytest.fixture(scope="module")
def mid_table(mid_world: World) -> pa.Table:
    return generate_log(mid_world)


def _np(table: pa.Table, column: str) -> np.ndarray:
    """Column as numpy; int8 labels as float with NaN for null."""
    array = table[column].combine_chunks()
    if pa.types.is_integer(array.type) and array.null_count:
        return array.cast(pa.float64()).fill_null(np.nan).to_numpy()
    return array.to_numpy(zero_copy_only=False)


def _assert_tables_equal(a: pa.Table, b: pa.Table) -> None:
    assert a.schema == b.schema
    for name in a.column_names:
        if pa.types.is_floating(a[name].type):
            np.testing.assert_array_equal(_np(a, name), _np(b, name), err_msg=name)
        else:
            assert a[name].equals(b[name]), name


# ---------------------------------------------------------------------------------------------- shape


def test_same_seed_gives_the_same_table(small_table: pa.Table) -> None:
    _assert_tables_equal(small_table, generate_log(World.generate(SMALL)))


def test_another_seed_gives_another_table(small_table: pa.Table) -> None:
    other = generate_log(World.generate(dataclasses.replace(SMALL, seed=4)))
    assert not other["user_id"].equals(small_table["user_id"])
    assert not np.array_equal(_np(other, "true_stream"), _np(small_table, "true_stream"))


def test_every_contract_column_has_its_arrow_type(small_table: pa.Table) -> None:
    assert small_table.num_rows == SMALL.n_impressions
    assert {name: small_table.schema.field(name).type for name in small_table.column_names} == EXPECTED_TYPES
    contract_names = {*REQUIRED_COLUMNS, *LABELS, *(f.name for f in STANDARD_FEATURES)}
    assert set(small_table.column_names) == contract_names | {true_probability_column(x) for x in LABELS}


def test_ids_unique_and_ts_sorted(small_table: pa.Table) -> None:
    assert pc.count_distinct(small_table["impression_id"]).as_py() == small_table.num_rows
    ts = _np(small_table, "ts").astype(np.int64)
    assert np.all(np.diff(ts) >= 0)
    start = np.datetime64(SMALL.start, "us").astype(np.int64)
    assert ts.min() >= start and ts.max() < start + SMALL.n_days * 86_400_000_000


def test_categorical_values_are_consistent(small_table: pa.Table) -> None:
    source, fmt, surface = _np(small_table, "source"), _np(small_table, "format"), _np(small_table, "surface")
    ads = source == "ads"
    assert set(source) == {"ads", "promotions"}
    assert set(fmt[ads]) == set(vocab.FORMATS)
    assert set(fmt[~ads]) == {"display", None}
    assert all(vocab.SURFACES[vocab.AD_SURFACE_OF_FORMAT[vocab.FORMATS.index(f)]] == s
               for f, s in set(zip(fmt[ads], surface[ads])))  # fmt: skip
    assert set(surface[~ads]) == {"home_shelf", "search"}
    assert small_table["layout"].filter(pa.array(ads)).null_count == ads.sum()
    assert small_table["layout"].filter(pa.array(~ads)).null_count == 0
    assert small_table["creative_id"].filter(pa.array(~ads)).null_count == (~ads).sum()


def test_history_lists_carry_taste(small_world: World, small_table: pa.Table) -> None:
    users = small_world.users
    rows = np.repeat(np.arange(SMALL.n_users), np.diff(users.history_offsets))
    random_shows = np.random.default_rng(0).integers(0, SMALL.n_shows, size=len(rows))
    taste = small_world.affinity(rows, users.history).mean()
    assert taste > small_world.affinity(rows, random_shows).mean() + 0.5
    for history, followed in zip(small_table["user_history_shows"].to_pylist()[:500],
                                 small_table["user_followed_shows"].to_pylist()[:500]):  # fmt: skip
        assert len(history) >= 1 and len(set(history)) == len(history)
        assert set(followed) <= set(history)


# ---------------------------------------------------------------------------------------------- structure


def test_ads_outnumber_promotions_and_stream_less(mid_table: pa.Table) -> None:
    ads = _np(mid_table, "source") == "ads"
    assert 3.5 <= ads.sum() / (~ads).sum() <= 4.5
    stream = _np(mid_table, "stream")
    assert 0.010 <= stream[ads].mean() <= 0.020
    assert 0.040 <= stream[~ads].mean() <= 0.060


def test_every_tier_is_populated(mid_world: World, mid_table: pa.Table) -> None:
    logged = np.bincount(tier_of(_np(mid_table, "show_streams_30d")), minlength=N_TIERS)
    assert np.all(logged > 0), logged
    shows = np.bincount(mid_world.tier(np.arange(MID.n_shows), np.full(MID.n_shows, MID.n_days - 1)))
    assert shows[0] < shows[2:7].sum() / 20  # few tier-0 shows, most in tiers 2-6


def test_impressions_grow_sublinearly_with_popularity(mid_world: World, mid_table: pa.Table) -> None:
    show = pc.cast(pc.utf8_slice_codeunits(mid_table["show_id"], 1), pa.int64()).to_numpy()
    counts = np.bincount(show, minlength=MID.n_shows)
    seen = counts > 0
    every_show = np.arange(MID.n_shows)
    popularity = np.log1p(mid_world.streams_30d(every_show, np.full(MID.n_shows, MID.n_days // 2)))
    slope = np.polyfit(popularity[seen], np.log(counts[seen]), 1)[0]
    assert 0.0 < slope < 1.0


def test_new_shows_are_promoted_before_advertised(mid_world: World, mid_table: pa.Table) -> None:
    new = mid_world.is_new_show
    assert 0.10 < new.mean() < 0.20
    assert np.all(mid_world.first_promo_day[new] == mid_world.launch_day[new])
    delay = mid_world.first_ad_day[new] - mid_world.launch_day[new]
    assert np.all((delay >= 7) & (delay <= 14)) and np.all(mid_world.first_ad_day[new] < NEVER)
    source, show, age = _np(mid_table, "source"), _np(mid_table, "show_id"), _np(mid_table, "show_age_days")
    ts = _np(mid_table, "ts").astype(np.int64)
    new_ids = {f"s{i:05d}" for i in np.flatnonzero(new)}
    is_new = np.isin(show, list(new_ids))
    assert np.all(age[is_new & (source == "ads")] >= 7)
    assert np.any(age[is_new & (source == "promotions")] == 0)
    first_ad, first_promo = {}, {}
    for s, src, t in zip(show[is_new], source[is_new], ts[is_new]):  # rows are time-sorted
        (first_ad if src == "ads" else first_promo).setdefault(s, t)
    promoted_first = [s in first_promo and first_promo[s] < t for s, t in first_ad.items()]
    assert len(promoted_first) > 100 and np.mean(promoted_first) > 0.95  # thin logs can miss a few


def test_new_shows_streams_grow_from_zero(mid_world: World) -> None:
    new = np.flatnonzero(mid_world.is_new_show)
    launch = mid_world.launch_day[new]
    assert np.all(mid_world.streams_30d(new, launch) == 0)
    assert np.all(mid_world.show_age_days(new, launch) == 0)
    later = mid_world.streams_30d(new, launch + 20)
    assert np.all(later >= mid_world.streams_30d(new, launch + 5)) and later.mean() > 0


def test_like_is_null_exactly_on_audio_ads(mid_table: pa.Table) -> None:
    audio_ad = (_np(mid_table, "source") == "ads") & (_np(mid_table, "format") == "audio")
    assert np.array_equal(mid_table["like"].is_null().to_numpy(zero_copy_only=False), audio_ad)
    assert np.array_equal(np.isnan(_np(mid_table, "true_like")), audio_ad)
    for label in ("stream", "click", "follow"):
        assert mid_table[label].null_count == 0
        assert not np.isnan(_np(mid_table, true_probability_column(label))).any()


# ---------------------------------------------------------------------------------------------- labels


@pytest.mark.parametrize("label", LABELS)
def test_observed_rates_match_true_probabilities(mid_table: pa.Table, label: str) -> None:
    """Per source, and per decile of the true probability, observed counts are within 4-4.5 sd of expected."""
    y, p = _np(mid_table, label), _np(mid_table, true_probability_column(label))
    source = _np(mid_table, "source")
    for src in ("ads", "promotions"):
        keep = (source == src) & ~np.isnan(p)
        total_sd = np.sqrt(np.sum(p[keep] * (1 - p[keep])))
        assert abs(y[keep].sum() - p[keep].sum()) < 4 * total_sd, (src, y[keep].sum(), p[keep].sum())
        edges = np.quantile(p[keep], np.linspace(0, 1, 11))
        bins = np.clip(np.searchsorted(edges, p[keep], side="right") - 1, 0, 9)
        for b in range(10):
            yb, pb = y[keep][bins == b], p[keep][bins == b]
            sd = np.sqrt(np.sum(pb * (1 - pb)))
            assert abs(yb.sum() - pb.sum()) < 4.5 * sd + 1, (src, b, yb.sum(), pb.sum())


def test_click_and_follow_correlate_with_stream(mid_table: pa.Table) -> None:
    stream = _np(mid_table, "stream")
    for label in ("click", "follow"):
        assert np.corrcoef(_np(mid_table, label), stream)[0, 1] > 0.1
    like = _np(mid_table, "like")
    seen = ~np.isnan(like)
    assert np.corrcoef(like[seen], stream[seen])[0, 1] > 0.1


def test_true_columns_equal_the_pure_function(small_world: World, small_table: pa.Table) -> None:
    log = sample_log(small_world)
    recomputed = small_world.marginals(log.placements)
    for label in LABELS:
        np.testing.assert_array_equal(recomputed[label], _np(small_table, true_probability_column(label)))


def _random_placements(world: World, n: int, seed: int) -> dict[str, np.ndarray]:
    """Arbitrary (user, show, creative, context) combinations, mostly never logged."""
    rng = np.random.default_rng(seed)
    source = rng.integers(0, 2, size=n)
    is_ad = source == vocab.SOURCE_ADS
    return {
        "user": rng.integers(0, world.n_users, size=n),
        "show": rng.integers(0, world.n_shows, size=n),
        "source": source,
        "creative": np.where(is_ad, rng.integers(0, world.campaigns.n_creatives, size=n), -1),
        "surface": rng.integers(0, len(vocab.SURFACES), size=n),
        "device": rng.integers(0, len(vocab.DEVICES), size=n),
        "slot": rng.integers(0, len(vocab.SLOTS), size=n),
        "layout": np.where(is_ad, -1, rng.integers(0, len(vocab.LAYOUTS), size=n)),
        "hour": rng.integers(0, 24, size=n),
        "day": rng.integers(0, 2 * world.params.n_days, size=n),
    }


def test_true_probabilities_for_unlogged_combinations(small_world: World) -> None:
    index = _random_placements(small_world, 5_000, seed=1)
    probs = small_world.true_probabilities(**index)
    assert set(probs) == set(LABELS)
    fmt = small_world.campaigns.creative_format[index["creative"]]
    audio_ad = (index["source"] == vocab.SOURCE_ADS) & (fmt == vocab.AUDIO)
    assert np.array_equal(np.isnan(probs["like"]), audio_ad)
    for label, values in probs.items():
        finite = values[~np.isnan(values)]
        assert finite.shape[0] > 0 and np.all((finite > 0) & (finite < 1)), label
    with pytest.raises(ValueError, match="creative"):
        small_world.true_probabilities(**{**index, "creative": np.full(5_000, -1)})


def test_save_load_round_trip(small_world: World, tmp_path: Path) -> None:
    small_world.save(tmp_path / "world")
    loaded = World.load(tmp_path / "world")
    assert loaded.params == small_world.params
    index = _random_placements(small_world, 5_000, seed=2)
    before, after = small_world.true_probabilities(**index), loaded.true_probabilities(**index)
    for label in LABELS:
        np.testing.assert_array_equal(before[label], after[label])
    _assert_tables_equal(generate_log(loaded), generate_log(small_world))


def test_write_synthetic_dataset(tmp_path: Path) -> None:
    params = WorldParams(n_users=300, n_shows=60, n_impressions=3_000, n_days=14, seed=5)
    reports: list[tuple[int, int]] = []
    path = write_synthetic_dataset(tmp_path / "data", params, chunk_rows=400, on_rows=lambda *r: reports.append(r))
    assert path == tmp_path / "data" / "impressions.parquet"
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["impressions.parquet", "world"]
    assert sorted(p.name for p in (tmp_path / "data" / "world").iterdir()) == ["arrays.npz", "world.json"]
    assert pq.ParquetFile(path).num_row_groups > 1  # written a batch at a time
    assert reports[0] == (0, 3_000) and reports[-1] == (3_000, 3_000) and len(reports) > 2
    _assert_tables_equal(pq.read_table(path), generate_log(World.load(tmp_path / "data" / "world")))


# ---------------------------------------------------------------------------------------------- streaming


@pytest.mark.parametrize("chunk_rows", [1, 700, 6_000])
def test_log_does_not_depend_on_the_chunk_size(small_world: World, small_table: pa.Table, chunk_rows: int) -> None:
    tables = list(iter_log_tables(small_world, chunk_rows=chunk_rows))
    assert len(tables) > 1 and all(t.num_rows >= chunk_rows for t in tables[:-1])
    _assert_tables_equal(pa.concat_tables(tables), small_table)


def test_hour_batches_cover_every_hour_without_splitting_one() -> None:
    per_hour = np.array([0, 5, 0, 3, 9, 1, 0, 0])
    assert dataset.hour_batches(per_hour, 6) == [(0, 4), (4, 5), (5, 8)]
    assert dataset.hour_batches(per_hour, 1) == [(0, 2), (2, 4), (4, 5), (5, 8)]  # trailing empty hours join the last
    assert dataset.hour_batches(per_hour, 100) == [(0, 8)]


def test_a_failed_write_leaves_the_previous_log_untouched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    params = WorldParams(n_users=300, n_shows=60, n_impressions=3_000, n_days=14, seed=5)
    path = write_synthetic_dataset(tmp_path, params)
    before = path.read_bytes()

    def fail_after_one(world: World, chunk_rows: int) -> Iterator[pa.Table]:
        yield next(iter(iter_log_tables(world, chunk_rows)))
        raise RuntimeError("killed mid-log")

    monkeypatch.setattr(dataset, "iter_log_tables", fail_after_one)
    with pytest.raises(RuntimeError, match="mid-log"):
        write_synthetic_dataset(tmp_path, dataclasses.replace(params, seed=6), chunk_rows=400)
    assert path.read_bytes() == before
    assert World.load(tmp_path / "world").params == params  # the world is saved only after its log
    assert sorted(p.name for p in tmp_path.iterdir()) == ["impressions.parquet", "world"]  # no temporary file left


def test_params_reject_bad_values() -> None:
    with pytest.raises(ValueError, match="n_users"):
        WorldParams(n_users=0)
    with pytest.raises(ValueError, match="ads_share"):
        WorldParams(ads_share=1.5)
    with pytest.raises(TypeError):
        WorldParams.from_dict({**SMALL.to_dict(), "unknown_knob": 1})
    assert WorldParams.from_dict(SMALL.to_dict()) == SMALL


def test_placements_reject_inconsistent_input() -> None:
    with pytest.raises(ValueError, match="length"):
        Placements(user=[0, 1], show=[0], source=[1], creative=[-1], surface=[0], device=[0], slot=[0],
                   layout=[0], hour=[0], day=[0])  # fmt: skip
    with pytest.raises(ValueError, match="layout"):
        Placements(user=[0], show=[0], source=[1], creative=[-1], surface=[0], device=[0], slot=[0],
                   layout=[-1], hour=[0], day=[0])  # fmt: skip
