"""Response bodies written from the probability array (serving/responses.py) are byte for byte what
orjson writes for the same answer built as dicts: every probability's digits, ids needing escapes,
OOV fields, ranked order with scores, one candidate, one task."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from unitarget.serving import responses

IDS = ['c"0', None, "c%d\\", "é😀", "", "x" * 30]


def _reference(version, tasks, shared_oov, order, ids, probabilities, oov_fields, scores=None) -> bytes:
    """The dict form the service used to serialise (index, id, probabilities by task, oov_fields, [score])."""
    candidates = []
    for k, i in enumerate(order):
        candidate = {"index": i, "id": ids[i], "probabilities": dict(zip(tasks, probabilities[k].tolist())),
                     "oov_fields": [f for f, flags in oov_fields.items() if flags[i]]}
        if scores is not None:
            candidate["score"] = float(scores[k])
        candidates.append(candidate)
    return orjson.dumps({"model_version": version, "tasks": list(tasks), "oov_fields": shared_oov,
                         "candidates": candidates})


@pytest.mark.parametrize("n, tasks", [(1, ("click",)), (6, ("promo_stream", "ad%stream", 'li"ke')), (200, tuple("abcde"))])
def test_bodies_are_the_bytes_orjson_writes_for_the_dicts(n, tasks):
    rng = np.random.default_rng(n)
    probabilities = (rng.random((n, len(tasks))) ** rng.integers(1, 40, (n, len(tasks)))).astype(np.float32)
    probabilities[0, 0] = 0.0
    ids = [IDS[i % len(IDS)] for i in range(n)]
    oov_fields = {"show_id": rng.random(n) < 0.3, "creative_id": rng.random(n) < 0.1}
    order = list(range(n))
    got = responses.body("v1", tasks, ["user_id"], responses.candidate_objects(tasks, order, ids, probabilities,
                                                                               oov_fields))
    assert got == _reference("v1", tasks, ["user_id"], order, ids, probabilities, oov_fields)
    scores = probabilities.astype(np.float64) @ rng.random(len(tasks)) / rng.uniform(0.5, 3.0, n)
    ranked = np.argsort(-scores, kind="stable")[: max(1, n // 2)]
    got = responses.body("v1", tasks, [], responses.candidate_objects(tasks, ranked.tolist(), ids,
                                                                      probabilities[ranked], oov_fields, scores[ranked]))
    assert got == _reference("v1", tasks, [], ranked.tolist(), ids, probabilities[ranked], oov_fields, scores[ranked])
    assert orjson.loads(got)["candidates"][0]["index"] == int(ranked[0])
