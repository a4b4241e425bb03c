"""The synthetic world: every latent parameter as numpy arrays, and the true outcome probabilities.

A :class:`World` is a pure function of :class:`WorldParams` (``World.generate``). Its
:meth:`World.true_probabilities` is a vectorised function of index arrays, so an online simulator
can ask for any (user, show, creative, context) combination, logged or not.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from unitarget.contract import tier_of
from unitarget.io import atomic_output, atomic_write_text
from unitarget.synth import labels
from unitarget.synth.campaigns import Campaigns, generate_campaigns
from unitarget.synth.history import with_histories
from unitarget.synth.labels import Chain
from unitarget.synth.params import WorldParams
from unitarget.synth.placements import Placements
from unitarget.synth.population import Shows, Users, generate_shows, generate_users, streams_30d

FORMAT_VERSION = 1
_PARAMS_FILE = "world.json"
_ARRAYS_FILE = "arrays.npz"
_GROUPS = {"users": Users, "shows": Shows, "campaigns": Campaigns}


@dataclass(frozen=True)
class World:
    """The synthetic world: parameters and the latent users, shows and campaigns that logs are sampled from and true
    probabilities computed from; stored as JSON plus npz, no pickle."""

    params: WorldParams
    users: Users
    shows: Shows
    campaigns: Campaigns

    # ------------------------------------------------------------------ construction and storage
    @classmethod
    def generate(cls, params: WorldParams) -> World:
        """Draw every latent parameter; independent random streams per component, seeded by params.seed."""
        users_seed, shows_seed, campaigns_seed, history_seed = np.random.SeedSequence(params.seed).spawn(4)
        users = generate_users(params, np.random.default_rng(users_seed))
        shows = generate_shows(params, np.random.default_rng(shows_seed))
        campaigns = generate_campaigns(params, shows.launch_day, np.random.default_rng(campaigns_seed))
        users = with_histories(users, shows, params, np.random.default_rng(history_seed))
        return cls(params=params, users=users, shows=shows, campaigns=campaigns)

    def save(self, directory: Path) -> None:
        """Write ``directory/world.json`` (params) and ``directory/arrays.npz`` (no pickle), atomically."""
        directory = Path(directory)
        arrays = {
            f"{group}.{f.name}": getattr(getattr(self, group), f.name)
            for group, kind in _GROUPS.items()
            for f in fields(kind)
        }
        meta = {"format_version": FORMAT_VERSION, "params": self.params.to_dict()}
        atomic_write_text(directory / _PARAMS_FILE, json.dumps(meta, indent=2))
        with atomic_output(directory / _ARRAYS_FILE) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **arrays)

    @classmethod
    def load(cls, directory: Path) -> World:
        """Inverse of ``save``: refuses another format version, missing or unexpected arrays; the npz is read with
        ``allow_pickle=False``."""
        directory = Path(directory)
        meta = json.loads((directory / _PARAMS_FILE).read_text())
        if meta.get("format_version") != FORMAT_VERSION:
            found = meta.get("format_version")
            raise ValueError(f"{directory}: world format {found}, expected {FORMAT_VERSION}")
        with np.load(directory / _ARRAYS_FILE, allow_pickle=False) as npz:
            stored = {key: npz[key] for key in npz.files}
        groups: dict[str, Any] = {}
        for group, kind in _GROUPS.items():
            names = [f.name for f in fields(kind)]
            missing = [n for n in names if f"{group}.{n}" not in stored]
            if missing:
                raise ValueError(f"{directory / _ARRAYS_FILE}: missing arrays {group}.{missing}")
            groups[group] = kind(**{n: stored.pop(f"{group}.{n}") for n in names})
        if stored:
            raise ValueError(f"{directory / _ARRAYS_FILE}: unexpected arrays {sorted(stored)}")
        return cls(params=WorldParams.from_dict(meta["params"]), **groups)

    # ------------------------------------------------------------------ sizes and show state
    @property
    def n_users(self) -> int:
        """Number of users (``params.n_users``)."""
        return self.params.n_users

    @property
    def n_shows(self) -> int:
        """Number of shows (``params.n_shows``)."""
        return self.params.n_shows

    @property
    def launch_day(self) -> np.ndarray:
        """(n_shows,) int32 day of each show's first episode; negative before the period."""
        return self.shows.launch_day

    @property
    def is_new_show(self) -> np.ndarray:
        """(n_shows,) bool: launched during the period (cold start)."""
        return self.shows.launch_day >= 0

    @property
    def first_ad_day(self) -> np.ndarray:
        """(n_shows,) int32 first day of the show's first ad campaign; campaigns.NEVER if none."""
        return self.campaigns.first_ad_day(self.n_shows)

    @property
    def first_promo_day(self) -> np.ndarray:
        """(n_shows,) int32 first day of the show's first promotion campaign; campaigns.NEVER if none."""
        return self.campaigns.first_promo_day(self.n_shows)

    def streams_30d(self, show: np.ndarray, day: np.ndarray) -> np.ndarray:
        """int64 platform-wide 30-day streams of ``show`` on ``day`` (see population.streams_30d)."""
        return streams_30d(self.shows, self.params, show, day)

    def tier(self, show: np.ndarray, day: np.ndarray) -> np.ndarray:
        """int8 popularity tier (contract.tier_of) of ``show`` on ``day``."""
        return tier_of(self.streams_30d(show, day))

    def show_age_days(self, show: np.ndarray, day: np.ndarray) -> np.ndarray:
        """int32 days since the show's first episode (negative before launch)."""
        return (np.asarray(day) - self.shows.launch_day[np.asarray(show)]).astype(np.int32)

    def episode_number(self, show: np.ndarray, day: np.ndarray) -> np.ndarray:
        """int64 ordinal of the show's latest episode on ``day``: one every ``cadence`` days from launch."""
        show = np.asarray(show)
        age = np.maximum(self.show_age_days(show, day), 0)
        return (age // self.shows.cadence[show]).astype(np.int64)

    # ------------------------------------------------------------------ outcome model
    def affinity(self, user: np.ndarray, show: np.ndarray) -> np.ndarray:
        """float64 latent affinity ``u_user . v_show / sqrt(K)``, shared by every label and channel."""
        u, v = self.users.taste[np.asarray(user)], self.shows.taste[np.asarray(show)]
        return np.einsum("ij,ij->i", u, v) / np.sqrt(self.params.latent_dim)

    def chain(self, placements: Placements) -> Chain:
        """Conditional probabilities of the click -> stream -> like/follow chain (see labels.py)."""
        return labels.chain(self, placements)

    def true_probabilities(
        self,
        *,
        user: np.ndarray,
        show: np.ndarray,
        source: np.ndarray,
        creative: np.ndarray,
        surface: np.ndarray,
        device: np.ndarray,
        slot: np.ndarray,
        layout: np.ndarray,
        hour: np.ndarray,
        day: np.ndarray,
    ) -> dict[str, np.ndarray]:
        """Marginal P(label | features) for "stream", "click", "like", "follow"; float64 arrays.

        Index arrays as in :class:`Placements`: source 0 = ads / 1 = promotions; creative -1 and
        layout -1 where absent; categorical indices into :mod:`unitarget.synth.vocab`; day 0 is
        ``params.start``. ``like`` is NaN on audio ads, where there is no like button.
        """
        p = Placements(
            user=user, show=show, source=source, creative=creative, surface=surface,
            device=device, slot=slot, layout=layout, hour=hour, day=day,
        )  # fmt: skip
        return self.marginals(p)

    def marginals(self, p: Placements) -> dict[str, np.ndarray]:
        """:meth:`true_probabilities` for a :class:`Placements`, computed in blocks of rows (labels.py)."""
        return labels.marginals(self, p)

