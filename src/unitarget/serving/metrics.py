"""The service's Prometheus metrics (``prometheus_client``), one registry per app.

    unitarget_requests_total{endpoint, status}        counter
    unitarget_request_seconds{endpoint}               histogram
    unitarget_oov_total{field}                        counter: values scored through an OOV row
    unitarget_candidates_total                        counter: candidates scored
    unitarget_rejected_total{reason}                  counter: overload and oversize rejections
    unitarget_in_flight                               gauge: scoring requests being served
    unitarget_batch_requests                          histogram: requests per ONNX Runtime call
    unitarget_batch_rows                              histogram: candidate rows per ONNX Runtime call
    unitarget_model_info{version, pid}                gauge, 1 for the version serving
    unitarget_model_in_sync                           gauge: 1 when serving the version pointer's version
    unitarget_follow_failures_total                   counter: pointed versions this worker could not load

Endpoints are the service's own paths; any other path is counted as "other", so a scan of random
URLs cannot grow the label set without bound. Each app (and so each worker process) has its own
registry: tests can build several apps in one process, and ``/metrics`` of a worker reports that
worker.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE

#: Upper bounds (seconds) of the latency histogram: the sub-20 ms range an ad auction cares about.
LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
#: Upper bounds of the batch histograms: requests per call, and candidate rows per call.
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)
ROW_BUCKETS = (1, 50, 100, 200, 400, 800, 1600, 3200, 4096, 8192)

__all__ = ["BATCH_BUCKETS", "CONTENT_TYPE", "LATENCY_BUCKETS", "ROW_BUCKETS", "Metrics"]


class Metrics:
    """The counters the guard middleware and the scoring routes update (thread-safe)."""

    def __init__(self, endpoints: Iterable[str]) -> None:
        self.endpoints = frozenset(endpoints)
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("unitarget_requests", "HTTP requests by endpoint and status",
                                ["endpoint", "status"], registry=self.registry)
        self.latency = Histogram("unitarget_request_seconds", "request latency in the service", ["endpoint"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.oov = Counter("unitarget_oov", "request values scored through an OOV row", ["field"],
                           registry=self.registry)
        self.candidates = Counter("unitarget_candidates", "candidates scored", registry=self.registry)
        self.rejected = Counter("unitarget_rejected", "requests refused before any work", ["reason"],
                                registry=self.registry)
        self.in_flight_gauge = Gauge("unitarget_in_flight", "requests being served now", registry=self.registry)
        self.model_info = Gauge("unitarget_model_info", "the model version serving (1) and the worker's pid",
                                ["version", "pid"], registry=self.registry)
        self.in_sync = Gauge("unitarget_model_in_sync", "1 when serving the version pointer's version",
                             registry=self.registry)
        self.follow_failures = Counter("unitarget_follow_failures", "pointed versions this worker could not load",
                                       registry=self.registry)
        self.batch_requests = Histogram("unitarget_batch_requests", "requests per ONNX Runtime call",
                                        buckets=BATCH_BUCKETS, registry=self.registry)
        self.batch_rows = Histogram("unitarget_batch_rows", "candidate rows per ONNX Runtime call",
                                    buckets=ROW_BUCKETS, registry=self.registry)
        self.in_flight = 0  # scoring requests being served: the guard's admission check, the batcher's wait
        self.in_flight_gauge.set_function(lambda: self.in_flight)

    def endpoint(self, path: str) -> str:
        """The endpoint label of ``path``: the path itself when it is one of the service's, else ``other``, so random
        URLs cannot grow the label set."""
        return path if path in self.endpoints else "other"

    def observe(self, endpoint: str, status: int, seconds: float) -> None:
        """Count one finished request by endpoint and status and record its latency in the histogram."""
        self.requests.labels(endpoint, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)

    def count_scored(self, candidates: int, oov: dict[str, int]) -> None:
        """Add the candidates scored and each field's values scored through an OOV row (fields with no OOV value create
        no series)."""
        self.candidates.inc(candidates)
        for field, count in oov.items():
            if count:
                self.oov.labels(field).inc(count)

    def count_batch(self, requests: int, rows: int) -> None:
        """Record one ONNX Runtime call: how many requests and candidate rows it scored."""
        self.batch_requests.observe(requests)
        self.batch_rows.observe(rows)

    def reject(self, reason: str) -> None:
        """Count one request refused before any work, by reason."""
        self.rejected.labels(reason).inc()

    def rejections(self, reason: str) -> float:
        """Requests refused for ``reason`` so far (0 before the first), read back from the registry."""
        return self.registry.get_sample_value("unitarget_rejected_total", {"reason": reason}) or 0.0

    def render(self, model_version: str | None, in_sync: bool) -> bytes:
        """The exposition text (``CONTENT_TYPE``), with the serving version as the only model_info (labelled with the
        worker's pid, so a scrape through the shared port says which worker answered) and whether it is the pointed
        one."""
        self.model_info.clear()
        if model_version is not None:
            self.model_info.labels(model_version, str(os.getpid())).set(1)
        self.in_sync.set(1 if in_sync else 0)
        return generate_latest(self.registry)
