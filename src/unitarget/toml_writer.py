"""A configuration written as a TOML file that ``--config`` reads back to the same ``Config``.

The standard library reads TOML (``tomllib``) but does not write it, and the configuration's JSON types need
little: tables, arrays of tables (``[[tasks]]``), inline arrays, strings, numbers and booleans. TOML has no null:
a ``None`` setting is left out, which reads back as its default, and ``config_toml`` checks that the text does
read back to the configuration it was given.
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from collections.abc import Mapping
from typing import Any

from unitarget.config import Config, config_from_mapping
from unitarget.errors import UnitargetError

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def config_toml(config: Config) -> str:
    """``config`` as TOML text that ``load_config`` turns back into ``config`` (checked here)."""
    text = dumps(config.to_json_dict())
    if config_from_mapping(tomllib.loads(text), "the TOML written") != config:
        raise UnitargetError("the configuration does not survive a round trip through TOML: a setting whose "
                             "default is not None was None")
    return text


def dumps(data: Mapping[str, Any]) -> str:
    """A mapping of JSON types as TOML: a table's plain keys first, then its arrays of tables, then its sub-tables;
    ``None`` values left out."""
    lines: list[str] = []
    _table(lines, data, ())
    return "\n".join(lines).strip() + "\n"


def _table(lines: list[str], table: Mapping[str, Any], path: tuple[str, ...], array: bool = False) -> None:
    plain = {k: v for k, v in table.items() if v is not None and not _is_table(v) and not _is_table_array(v)}
    if path:
        name = ".".join(_key(p) for p in path)
        lines += ["", f"[[{name}]]" if array else f"[{name}]"]
    lines += [f"{_key(k)} = {_value(v)}" for k, v in plain.items()]
    for key, value in table.items():
        if _is_table_array(value):
            for item in value:
                _table(lines, item, (*path, key), array=True)
    for key, value in table.items():
        if _is_table(value):
            _table(lines, value, (*path, key))


def _is_table(value: Any) -> bool:
    return isinstance(value, Mapping) and bool(value)  # an empty mapping is written inline: {}


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, Mapping) for v in value)


def _key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else json.dumps(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ("nan" if math.isnan(value) else ("inf" if value > 0
                                                                                            else "-inf"))
    if isinstance(value, str):
        return json.dumps(value)  # JSON's escapes are TOML's basic-string escapes
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items() if v is not None) + "}"
    raise UnitargetError(f"cannot write {value!r} as TOML")
