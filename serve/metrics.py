"""Prometheus metrics of one app, in a registry of its own (never the process-global one), so two apps
in one process (tests, benchmarks) count separately."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})  # any other: "other"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    content_type = CONTENT_TYPE_PLAIN_0_0_4

    def __init__(self, model: str, backend: str, device: str):
        r = self.registry = CollectorRegistry()
        Info("zoo_model", "The model this server runs", registry=r).info(
            {"name": model, "backend": backend, "device": device}
        )
        self.requests = Counter(
            "zoo_requests", "HTTP requests answered, by route and status", ["method", "route", "status"], registry=r
        )
        self.errors = Counter(
            "zoo_request_errors", "HTTP requests answered with a 4xx or 5xx status", ["route", "status"], registry=r
        )
        self.latency = Histogram(
            "zoo_request_duration_seconds",
            "Time from request to response, by route",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "zoo_batch_size", "Rows (images) per model batch", buckets=BATCH_BUCKETS, registry=r
        )
        self.batch_seconds = Histogram(
            "zoo_batch_duration_seconds", "Model time per batch", buckets=LATENCY_BUCKETS, registry=r
        )
        self.queue_depth = Gauge("zoo_queue_depth", "Rows waiting for the model", registry=r)
        self._series: dict[tuple, tuple] = {}  # (method, route, status) -> its labelled metrics
        self.warmup_seconds = Gauge("zoo_warmup_seconds", "Time the start-up warm-up took (0 until done)", registry=r)

    def request(self, method: str, route: str, status: int, seconds: float) -> None:
        if method not in METHODS:
            method = "other"
        key = (method, route, status)
        series = self._series.get(key)
        if series is None:  # label values are bounded (methods, route templates, statuses): cache them
            series = self._series[key] = (
                self.requests.labels(method, route, str(status)),
                self.errors.labels(route, str(status)) if status >= 400 else None,
                self.latency.labels(route),
            )
        requests, errors, latency = series
        requests.inc()
        if errors is not None:
            errors.inc()
        latency.observe(seconds)

    def batch(self, rows: int, seconds: float) -> None:
        self.batch_size.observe(rows)
        self.batch_seconds.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
