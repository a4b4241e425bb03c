"""A serving worker's heap after each version switch: collected, frozen, and handed back to the OS.

``settle`` runs whenever a loaded version replaces the current one (at start, on a reload, or when
a worker follows the pointer to a version it must load), off the request path:

1. ``gc.collect()`` then ``gc.freeze()``: every object alive now (the models, their vocabularies,
   the libraries) leaves the garbage collector's view. A full collection otherwise walked all of
   them: about 80 ms, every few hundred requests, which was the service's p99 latency
   (docs/benchmarks.md). Objects are still freed by reference counting when a version is dropped.
2. The young generation is collected after ``GC_YOUNG_THRESHOLD`` allocations instead of Python's
   700. A 200-candidate request allocates about a thousand containers (its models, lists and
   dicts), so at the default every request paid a collection or two, which walked the objects of
   every request in flight and promoted them, and full collections of those (1–3 ms each) followed
   every few dozen requests: about 0.2 ms of CPU per request. Only cyclic garbage waits longer.
3. ``malloc_trim(0)`` (glibc; nothing elsewhere): the version a switch drops frees its ONNX Runtime
   session (and the memory arena its batches grew), its vocabularies and the parity check's
   PyTorch buffers, but glibc keeps many freed pages in its heaps: with two versions alive, RSS
   drifted 467 -> 534 MiB over 8 reloads, and stays at 461-470 MiB with the trim
   (docs/benchmarks.md). Trimming takes a few milliseconds, once per load.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
from collections.abc import Callable
from functools import cache

#: Allocations of container objects between two young-generation collections (Python's default: 700).
GC_YOUNG_THRESHOLD = 10_000


def settle() -> None:
    """Collect and freeze what is alive, raise the young generation's threshold, and return freed memory to the OS
    (module docstring)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library has none (musl, macOS)."""
    name = ctypes.util.find_library("c")
    return getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
