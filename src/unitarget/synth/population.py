"""Latent structure of listeners and shows: taste vectors, propensities, popularity, launch days.

User taste ``u`` and show taste ``v`` are K-dimensional with unit variance per dimension, so the
affinity ``a = u . v / sqrt(K)`` has roughly unit variance. ``u`` is partly explained by country
and age; ``v`` mostly by genre and topics, so that content features can place a cold-start show.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from unitarget.synth import vocab
from unitarget.synth.params import WorldParams


@dataclass(frozen=True)
class Users:
    """Per-user arrays (length n_users unless noted).

    Histories and follows are CSR: user i's history is ``history[history_offsets[i]:history_offsets[i+1]]``.
    """

    country: np.ndarray  # int8 index into vocab.COUNTRIES
    age: np.ndarray  # int8 index into vocab.AGE_BUCKETS
    device: np.ndarray  # int8 primary device, index into vocab.DEVICES
    taste: np.ndarray  # (n_users, K) float64 taste vector u
    base: np.ndarray  # float64 general engagement (logit scale)
    format_propensity: np.ndarray  # (n_users, 3) float64 response to each ad format
    promo_propensity: np.ndarray  # float64 response to promotions
    like_propensity: np.ndarray  # float64
    follow_propensity: np.ndarray  # float64
    activity: np.ndarray  # float64 relative impression volume, mean 1
    history_offsets: np.ndarray  # (n_users + 1,) int64
    history: np.ndarray  # int32 show indices, most recent first
    followed_offsets: np.ndarray  # (n_users + 1,) int64
    followed: np.ndarray  # int32 show indices, a subset of the history


@dataclass(frozen=True)
class Shows:
    """Per-show arrays (length n_shows unless noted). Topics are CSR like user histories."""

    genre: np.ndarray  # int8 index into vocab.GENRES
    topic_offsets: np.ndarray  # (n_shows + 1,) int64
    topics: np.ndarray  # int32 topic indices
    publisher: np.ndarray  # int32 publisher index
    taste: np.ndarray  # (n_shows, K) float64 taste vector v
    quality: np.ndarray  # float64 idiosyncratic quality (logit scale)
    base_streams: np.ndarray  # float64 30-day streams once established (before drift)
    drift: np.ndarray  # float64 log trend over the period
    launch_day: np.ndarray  # int32 day of first episode (negative: before the period)
    cadence: np.ndarray  # int16 days between episodes
    publisher_quality: np.ndarray  # (n_publishers,) float64
    genre_taste: np.ndarray  # (n_genres, K) float64 genre centroids
    topic_taste: np.ndarray  # (n_topics, K) float64 topic vectors


def generate_users(params: WorldParams, rng: np.random.Generator) -> Users:
    """Demographics, taste and propensities; the history fields are left empty (see history.py)."""
    n, k, lm = params.n_users, params.latent_dim, params.labels
    country = rng.choice(len(vocab.COUNTRIES), size=n, p=vocab.shares(vocab.COUNTRY_SHARES))
    age = rng.choice(len(vocab.AGE_BUCKETS), size=n, p=vocab.shares(vocab.AGE_SHARES))
    # u = sqrt(d/2) (c_country + c_age) + sqrt(1 - d) eps: unit variance, share d from demographics.
    country_taste = rng.standard_normal((len(vocab.COUNTRIES), k))
    age_taste = rng.standard_normal((len(vocab.AGE_BUCKETS), k))
    d = params.demographic_taste_share
    taste = np.sqrt(d / 2) * (country_taste[country] + age_taste[age])
    taste += np.sqrt(1 - d) * rng.standard_normal((n, k))
    activity = rng.lognormal(0.0, params.activity_sd, size=n)
    empty = np.zeros(n + 1, dtype=np.int64)
    return Users(
        country=country.astype(np.int8),
        age=age.astype(np.int8),
        device=rng.choice(len(vocab.DEVICES), size=n, p=vocab.shares(vocab.DEVICE_SHARES)).astype(np.int8),
        taste=taste,
        base=rng.normal(0.0, lm.user_base_sd, size=n),
        format_propensity=rng.normal(0.0, lm.user_format_sd, size=(n, len(vocab.FORMATS))),
        promo_propensity=rng.normal(0.0, lm.user_promo_sd, size=n),
        like_propensity=rng.normal(0.0, lm.user_like_sd, size=n),
        follow_propensity=rng.normal(0.0, lm.user_follow_sd, size=n),
        activity=activity / activity.mean(),
        history_offsets=empty,
        history=np.zeros(0, dtype=np.int32),
        followed_offsets=empty,
        followed=np.zeros(0, dtype=np.int32),
    )


def generate_shows(params: WorldParams, rng: np.random.Generator) -> Shows:
    """Draw shows: genres, topics, taste vectors mixing genre, topic and own terms (unit variance), Zipf-assigned
    publishers, quality, launch days, base streams and release cadence."""
    n, k, lm = params.n_shows, params.latent_dim, params.labels
    n_genres = len(vocab.GENRES)
    genre = rng.integers(0, n_genres, size=n)
    genre_taste = rng.standard_normal((n_genres, k))
    # Topic vectors lean on their home genre (topic t's home genre is t mod n_genres).
    topic_taste = 0.6 * genre_taste[np.arange(params.n_topics) % n_genres]
    topic_taste += 0.8 * rng.standard_normal((params.n_topics, k))
    topic_offsets, topics = _draw_topics(params, genre, rng)
    topic_sum = np.zeros((n, k))
    counts = np.diff(topic_offsets)
    np.add.at(topic_sum, np.repeat(np.arange(n), counts), topic_taste[topics])
    topic_mean = topic_sum / np.sqrt(counts)[:, None]  # unit variance whatever the topic count
    g, t = params.genre_taste_share, params.topic_taste_share
    taste = np.sqrt(g) * genre_taste[genre] + np.sqrt(t) * topic_mean
    taste += np.sqrt(1 - g - t) * rng.standard_normal((n, k))
    taste /= taste.std()  # genre and topic terms correlate; restore unit variance per dimension
    publisher = _zipf_assignment(n, params.n_publishers, rng)
    quality = rng.normal(0.0, lm.show_quality_sd, size=n)
    publisher_quality = rng.normal(0.0, lm.publisher_quality_sd, size=params.n_publishers)
    launch_day = _launch_days(params, rng)
    base_streams = _base_streams(params, quality + publisher_quality[publisher], launch_day >= 0, rng)
    return Shows(
        genre=genre.astype(np.int8),
        topic_offsets=topic_offsets,
        topics=topics,
        publisher=publisher,
        taste=taste,
        quality=quality,
        base_streams=base_streams,
        drift=rng.normal(0.0, params.streams_drift_sd, size=n),
        launch_day=launch_day,
        cadence=rng.choice(np.array([1, 7, 14], dtype=np.int16), size=n, p=[0.15, 0.6, 0.25]),
        publisher_quality=publisher_quality,
        genre_taste=genre_taste,
        topic_taste=topic_taste,
    )


def _draw_topics(
    params: WorldParams, genre: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """1 + Poisson(1.5) distinct topics per show (capped), mostly from the genre's own topics."""
    n, m, n_genres = len(genre), params.max_topics, len(vocab.GENRES)
    wanted = np.minimum(1 + rng.poisson(1.5, size=n), m)
    per_genre = max(1, params.n_topics // n_genres)
    home = genre[:, None] + n_genres * rng.integers(0, per_genre, size=(n, m))
    home = np.where(home < params.n_topics, home, genre[:, None] % params.n_topics)
    anywhere = rng.integers(0, params.n_topics, size=(n, m))
    drawn = np.where(rng.random((n, m)) < params.home_topic_share, home, anywhere)
    drawn[:, 1:] = np.where(np.arange(1, m) < wanted[:, None], drawn[:, 1:], -1)
    drawn.sort(axis=1)
    keep = drawn >= 0
    keep[:, 1:] &= drawn[:, 1:] != drawn[:, :-1]  # drop repeats within a show
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(keep.sum(axis=1), out=offsets[1:])
    return offsets, drawn[keep].astype(np.int32)


def _zipf_assignment(n: int, n_groups: int, rng: np.random.Generator) -> np.ndarray:
    """Group of each of n items, group g chosen with probability ∝ 1 / (g + 1)."""
    weights = 1.0 / np.arange(1, n_groups + 1)
    return rng.choice(n_groups, size=n, p=weights / weights.sum()).astype(np.int32)


def _launch_days(params: WorldParams, rng: np.random.Generator) -> np.ndarray:
    """New shows launch uniformly over the period; established ones 30+ days (log-normal) before."""
    n = params.n_shows
    is_new = rng.random(n) < params.new_show_fraction
    new_day = rng.integers(0, params.n_days, size=n)
    age_at_start = params.min_established_age + rng.lognormal(np.log(300.0), 0.9, size=n)
    return np.where(is_new, new_day, -np.floor(age_at_start)).astype(np.int32)


def _base_streams(
    params: WorldParams, quality: np.ndarray, is_new: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """log10 S = mean + sd (rho z_quality + sqrt(1 - rho^2) z), offset for new shows."""
    rho = params.quality_popularity_corr
    z_quality = (quality - quality.mean()) / max(quality.std(), 1e-12)
    z = rho * z_quality + np.sqrt(1 - rho**2) * rng.standard_normal(len(quality))
    log10 = params.log10_streams_mean + params.log10_streams_sd * z
    log10 += np.where(is_new, params.new_show_log10_offset, 0.0)
    return 10.0**log10


def streams_30d(shows: Shows, params: WorldParams, show: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Platform-wide streams of ``show`` over the 30 days before ``day`` (int64, broadcasting).

    ``floor(S * min(age / ramp_days, 1) * exp(drift * (day - n_days / 2) / n_days))`` for
    ``age = day - launch_day >= 0``, else 0: a new show starts at 0 streams on its launch day and
    ramps up; an established show drifts slowly around its level ``S``.
    """
    show, day = np.asarray(show), np.asarray(day)
    age = day - shows.launch_day[show]
    ramp = np.clip(age / params.ramp_days, 0.0, 1.0)
    trend = np.exp(shows.drift[show] * (day - params.n_days / 2) / params.n_days)
    return np.floor(shows.base_streams[show] * ramp * trend).astype(np.int64)
