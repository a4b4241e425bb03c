"""The bodies of ``/v1/score`` and ``/v1/rank`` as JSON bytes, written from the probability array.

A body is a ``ScoreResponse`` (or ``RankResponse``): an envelope around one object per candidate,
``{"index", "id", "probabilities": {task: p, ...}, "oov_fields"}``, ranked ones with a ``"score"``
last. Building a dict per candidate and one per probability row, then serialising them, cost
about 0.35 ms of a 200-candidate request and fed the garbage collector 400 containers
(docs/benchmarks.md). Here one orjson call formats every probability (the (N, T) array as float64
with ``OPT_SERIALIZE_NUMPY``: the digits orjson writes for the same Python floats) and each
candidate is one ``bytes %`` of a template that holds the task names. The bytes are exactly what
``orjson.dumps`` writes for the dict form (tests/test_serving_responses.py compares them).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import orjson

_EMPTY = b"[]"


def body(model_version: str, tasks: Sequence[str], shared_oov: list[str], candidates: list[bytes]) -> bytes:
    """The envelope (version, tasks, the user and context fields unknown to the model) around ``candidates``, each
    one candidate's JSON object (``candidate_objects``)."""
    head = orjson.dumps({"model_version": model_version, "tasks": list(tasks), "oov_fields": shared_oov})
    return b"".join((head[:-1], b',"candidates":[', b",".join(candidates), b"]}"))


def candidate_objects(tasks: Sequence[str], order: Sequence[int], ids: Sequence[str | None],
                      probabilities: np.ndarray, oov_fields: dict[str, np.ndarray],
                      scores: np.ndarray | None = None) -> list[bytes]:
    """One JSON object per candidate of ``order`` (indices into the request), in that order.

    ``probabilities`` (K, T) and ``scores`` (K,) are those of the ``order`` rows already; ``ids`` and
    ``oov_fields`` (field -> (N,) bool, the candidate fields with any unknown value) are the request's.
    """
    keys = b",".join(orjson.dumps(task).replace(b"%", b"%%") + b":%s" for task in tasks)
    template = b'{"index":%d,"id":%s,"probabilities":{' + keys + b'},"oov_fields":%s' + \
        (b',"score":%s}' if scores is not None else b"}")
    oov = _oov_lists(order, oov_fields)
    rows = _numbers(probabilities)
    if scores is None:
        return [template % (i, orjson.dumps(ids[i]), *row.split(b","), oov.get(i, _EMPTY))
                for i, row in zip(order, rows)]
    return [template % (i, orjson.dumps(ids[i]), *row.split(b","), oov.get(i, _EMPTY), score)
            for i, row, score in zip(order, rows, _numbers(scores))]


def _numbers(values: np.ndarray) -> list[bytes]:
    """The JSON numbers of a (K,) array, or of each row of a (K, T) array joined by commas, as orjson writes them for
    the values as Python floats."""
    if len(values) == 0:
        return []
    text = orjson.dumps(np.ascontiguousarray(values, dtype=np.float64), option=orjson.OPT_SERIALIZE_NUMPY)
    return text[1:-1].split(b",") if values.ndim == 1 else text[2:-2].split(b"],[")


def _oov_lists(order: Sequence[int], oov_fields: dict[str, np.ndarray]) -> dict[int, bytes]:
    """Candidate -> the JSON list of its fields unknown to the model, for the candidates with any."""
    if not oov_fields:
        return {}
    unknown = np.logical_or.reduce(list(oov_fields.values()))
    wanted = set(np.flatnonzero(unknown).tolist()).intersection(order)
    return {i: orjson.dumps([field for field, flags in oov_fields.items() if flags[i]]) for i in wanted}
