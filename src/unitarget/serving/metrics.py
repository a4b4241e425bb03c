"""Prometheus text-format metrics, kept in process and formatted by hand (no client library needed).

    unitarget_requests_total{endpoint, status}        counter
    unitarget_request_seconds{endpoint}               histogram (le buckets, _sum, _count)
    unitarget_oov_total{field}                        counter: values scored through an OOV row
    unitarget_candidates_total                        counter: candidates scored
    unitarget_rejected_total{reason}                  counter: overload and oversize rejections
    unitarget_in_flight                               gauge
    unitarget_model_info{version}                     gauge, 1 for the version serving

Endpoints are the service's own paths; any other path is counted as "other", so a scan of random
URLs cannot grow the label set without bound. Each worker process has its own counters.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable

#: Upper bounds (seconds) of the latency histogram: the sub-20 ms range an ad auction cares about.
LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    """Counters updated from the event loop and from worker threads, hence the lock."""

    def __init__(self, endpoints: Iterable[str]) -> None:
        self.endpoints = frozenset(endpoints)
        self._lock = threading.Lock()
        self.requests: Counter[tuple[str, int]] = Counter()
        self.latency_counts: dict[str, list[int]] = {}
        self.latency_sums: Counter[str] = Counter()
        self.oov: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()
        self.candidates = 0
        self.in_flight = 0

    def endpoint(self, path: str) -> str:
        return path if path in self.endpoints else "other"

    def observe(self, endpoint: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[endpoint, status] += 1
            counts = self.latency_counts.setdefault(endpoint, [0] * (len(LATENCY_BUCKETS) + 1))
            counts[_bucket(seconds)] += 1
            self.latency_sums[endpoint] += seconds

    def count_scored(self, candidates: int, oov: dict[str, int]) -> None:
        with self._lock:
            self.candidates += candidates
            self.oov.update({k: v for k, v in oov.items() if v})

    def reject(self, reason: str) -> None:
        with self._lock:
            self.rejected[reason] += 1

    def render(self, model_version: str | None) -> str:
        """The exposition text (``text/plain; version=0.0.4``)."""
        with self._lock:
            lines = _header("unitarget_requests_total", "counter", "HTTP requests by endpoint and status")
            lines += [f'unitarget_requests_total{{endpoint="{e}",status="{s}"}} {n}'
                      for (e, s), n in sorted(self.requests.items())]
            lines += _header("unitarget_request_seconds", "histogram", "request latency in the service")
            for endpoint, counts in sorted(self.latency_counts.items()):
                lines += _histogram("unitarget_request_seconds", f'endpoint="{endpoint}"', counts,
                                    self.latency_sums[endpoint])
            lines += _header("unitarget_oov_total", "counter", "request values scored through an OOV row")
            lines += [f'unitarget_oov_total{{field="{f}"}} {n}' for f, n in sorted(self.oov.items())]
            lines += _header("unitarget_candidates_total", "counter", "candidates scored")
            lines.append(f"unitarget_candidates_total {self.candidates}")
            lines += _header("unitarget_rejected_total", "counter", "requests refused before any work")
            lines += [f'unitarget_rejected_total{{reason="{r}"}} {n}' for r, n in sorted(self.rejected.items())]
            lines += _header("unitarget_in_flight", "gauge", "requests being served now")
            lines.append(f"unitarget_in_flight {self.in_flight}")
        lines += _header("unitarget_model_info", "gauge", "the model version serving (1)")
        if model_version is not None:
            lines.append(f'unitarget_model_info{{version="{_escape(model_version)}"}} 1')
        return "\n".join(lines) + "\n"


def _bucket(seconds: float) -> int:
    for i, bound in enumerate(LATENCY_BUCKETS):
        if seconds <= bound:
            return i
    return len(LATENCY_BUCKETS)


def _header(name: str, kind: str, help_text: str) -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]


def _histogram(name: str, labels: str, counts: list[int], total: float) -> list[str]:
    lines, cumulative = [], 0
    for bound, count in zip((*LATENCY_BUCKETS, float("inf")), counts):
        cumulative += count
        le = "+Inf" if bound == float("inf") else repr(bound)
        lines.append(f'{name}_bucket{{{labels},le="{le}"}} {cumulative}')
    lines += [f"{name}_sum{{{labels}}} {total:.6f}", f"{name}_count{{{labels}}} {cumulative}"]
    return lines


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
