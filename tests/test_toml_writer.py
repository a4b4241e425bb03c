"""A configuration written as TOML reads back through --config to the same configuration."""

import tomllib

import pytest

from unitarget.config import Config, load_config, merge
from unitarget.presets import PRESETS, apply_preset
from unitarget.toml_writer import config_toml, dumps

UNUSUAL = {
    "tasks": [{"name": "click_audio", "label": "click", "sources": ["ads"], "formats": ["audio"], "weight": 0.5}],
    "features": {"hash_buckets": {"user_id": 1000}, "extra": [{"name": "odd key", "group": "user",
                                                               "kind": "categorical"}]},
    "model": {"linear": {"crosses": [["show_id", "user_id"]]}, "experts": {"groups": {"audio": ["click_audio"]}},
              "cross": {"rank": 4}},
    "train": {"threads": 2, "checkpoint_every_minutes": 1.5, "bf16": "auto"},
    "optim": {"lr": 1e-06},
    "evaluation": {"selection_task": "click_audio", "stream_task_for": {"ads": "click_audio"}},
}


@pytest.mark.parametrize("config", [Config(), *(apply_preset(Config(), p) for p in PRESETS), merge(Config(), UNUSUAL)],
                         ids=["defaults", *PRESETS, "unusual"])
def test_a_configuration_survives_a_round_trip_through_a_toml_file(config, tmp_path):
    (tmp_path / "c.toml").write_text(config_toml(config))
    assert load_config(tmp_path / "c.toml") == config


def test_keys_and_strings_toml_cannot_write_bare_are_quoted_and_none_is_left_out():
    data = {"a b": "say \"hi\"\n", "n": None, "t": {"x.y": [1, 2.5, True], "empty": {}}}
    assert tomllib.loads(dumps(data)) == {"a b": "say \"hi\"\n", "t": {"x.y": [1, 2.5, True], "empty": {}}}
