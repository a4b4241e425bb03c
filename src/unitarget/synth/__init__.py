"""The synthetic world: latent users, shows and campaigns, and impression logs sampled from them.

``World.generate(params)`` draws the latent structure; ``World.true_probabilities`` is the exact
outcome model; ``generate_log`` samples a contract-conforming impression log with ``true_<label>``
columns (``iter_log_tables``: the same rows a batch of hours at a time); ``write_synthetic_dataset`` writes both to
disk in bounded memory. See docs/synthetic-world.md.
"""

from unitarget.synth.campaigns import NEVER, Campaigns
from unitarget.synth.dataset import generate_log, iter_log_tables, write_synthetic_dataset
from unitarget.synth.labels import Chain
from unitarget.synth.log import sample_log
from unitarget.synth.params import LabelModel, WorldParams
from unitarget.synth.placements import Placements, SampledLog
from unitarget.synth.population import Shows, Users
from unitarget.synth.world import World

__all__ = [
    "NEVER",
    "Campaigns",
    "Chain",
    "LabelModel",
    "Placements",
    "SampledLog",
    "Shows",
    "Users",
    "World",
    "WorldParams",
    "generate_log",
    "iter_log_tables",
    "sample_log",
    "write_synthetic_dataset",
]
