"""Prometheus metrics of one server app, in a registry of its own.

Each :class:`ServerMetrics` owns a :class:`prometheus_client.CollectorRegistry` (never the
global one), so two apps in one process (tests, or several apps behind one runner) do not clash.
Gauges read at scrape time (outbox pending rows, drainer failures) are callbacks, so the metrics
never hold a store open themselves.

Metric names:

- ``curator_server_requests_total{method, route, status}``: requests answered.
- ``curator_server_request_duration_seconds{method, route}``: latency histogram.
- ``curator_server_unhandled_errors_total``: requests that reached the catch-all 500 handler.
- ``curator_server_outbox_pending_rows``: warehouse rows not yet delivered.
- ``curator_server_drainer_failures_total``: failed outbox drains since start.
- ``curator_server_drainer_drained_rows_total``: rows delivered by the drainer since start.
- ``curator_server_frames_total{status}``: uploaded frames answered, by status.
- ``curator_server_index_vectors{model_version}``: vectors in each near-duplicate index.
- ``curator_server_dedup_snapshots_total{outcome}``: background and shutdown dedup snapshots,
  ``ok`` or ``error``.
- ``curator_server_dedup_snapshot_age_seconds``: how long the dedup snapshot on disk has been
  behind the in-memory indexes (0 when current).
- ``curator_server_dedup_unsaved_vectors``: vectors accepted since the last dedup snapshot (what
  a crash now would make the next start catch up from the catalog).
- ``curator_server_heartbeats_total{outcome}``: device heartbeats answered, ``stored`` (new) or
  ``duplicate`` (a re-sent one).
- ``curator_server_device_last_heartbeat_timestamp_seconds{device_id}``: Unix time at which this
  process stored the device's most recent new heartbeat (server clock); a device this process
  has not heard from since it started has no sample (``GET /v1/devices`` has the stored history).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE", "UNMATCHED_ROUTE", "ServerMetrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
UNMATCHED_ROUTE = "<unmatched>"
"""The ``route`` label of requests no route matched (keeps label values bounded)."""


class ServerMetrics:
    """The metrics of one app.

    ``outbox_pending`` (returns the pending row count), ``drainer_stats`` (returns
    ``(failures, drained_rows)``) and ``dedup_snapshots`` (returns ``(saved, failed, age_s,
    unsaved_vectors)``) are set when the stores open; until then those metrics have no sample.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "curator_server_requests",
            "Requests answered, by method, route template and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "curator_server_request_duration_seconds",
            "Time to answer a request, by method and route template.",
            ["method", "route"],
            registry=self.registry,
        )
        self.unhandled_errors = Counter(
            "curator_server_unhandled_errors",
            "Requests that failed with an unexpected exception (answered 500).",
            registry=self.registry,
        )
        self.frames = Counter(
            "curator_server_frames",
            "Uploaded frames answered, by status (accepted, duplicate, rejected).",
            ["status"],
            registry=self.registry,
        )
        self.heartbeats = Counter(
            "curator_server_heartbeats",
            "Device heartbeats answered, by outcome (stored, duplicate).",
            ["outcome"],
            registry=self.registry,
        )
        self.device_last_heartbeat = Gauge(
            "curator_server_device_last_heartbeat_timestamp_seconds",
            "Unix time (server clock) at which each device's most recent new heartbeat was "
            "stored by this process.",
            ["device_id"],
            registry=self.registry,
        )
        self.outbox_pending: Callable[[], int] | None = None
        self.index_vectors: Callable[[], dict[str, int]] | None = None
        self.drainer_stats: Callable[[], tuple[int, int]] | None = None
        self.dedup_snapshots: Callable[[], tuple[int, int, float, int]] | None = None
        self.registry.register(_StoreCollector(self))

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one answered request and its latency."""
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def observe_heartbeat(self, device_id: str, received_at: datetime, *, duplicate: bool) -> None:
        """Count one answered heartbeat; a new one also sets the device's last-heartbeat time."""
        self.heartbeats.labels("duplicate" if duplicate else "stored").inc()
        if not duplicate:
            self.device_last_heartbeat.labels(device_id).set(received_at.timestamp())

    def render(self) -> bytes:
        """The registry in Prometheus text format."""
        return generate_latest(self.registry)


class _StoreCollector(Collector):
    def __init__(self, metrics: ServerMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        pending = GaugeMetricFamily(
            "curator_server_outbox_pending_rows", "Warehouse rows in the outbox, not delivered."
        )
        failures = CounterMetricFamily(
            "curator_server_drainer_failures", "Failed outbox drains since the process started."
        )
        drained = CounterMetricFamily(
            "curator_server_drainer_drained_rows", "Rows the outbox drainer delivered."
        )
        if self._metrics.outbox_pending is not None:
            pending.add_metric([], float(self._metrics.outbox_pending()))
        if self._metrics.drainer_stats is not None:
            n_failures, n_drained = self._metrics.drainer_stats()
            failures.add_metric([], float(n_failures))
            drained.add_metric([], float(n_drained))
        vectors = GaugeMetricFamily(
            "curator_server_index_vectors",
            "Vectors in the near-duplicate index of each embedding model version.",
            labels=["model_version"],
        )
        if self._metrics.index_vectors is not None:
            for version, count in sorted(self._metrics.index_vectors().items()):
                vectors.add_metric([version], float(count))
        yield pending
        yield failures
        yield drained
        yield vectors
        yield from self._dedup_snapshots()

    def _dedup_snapshots(self) -> Iterator[Metric]:
        snapshots = CounterMetricFamily(
            "curator_server_dedup_snapshots",
            "Dedup index snapshots attempted since start, by outcome (ok, error).",
            labels=["outcome"],
        )
        age = GaugeMetricFamily(
            "curator_server_dedup_snapshot_age_seconds",
            "Seconds the dedup snapshot on disk has been behind the in-memory indexes "
            "(0: current).",
        )
        unsaved = GaugeMetricFamily(
            "curator_server_dedup_unsaved_vectors",
            "Vectors accepted since the last dedup snapshot (a restart catches them up from the "
            "catalog).",
        )
        if self._metrics.dedup_snapshots is not None:
            n_ok, n_failed, age_s, n_unsaved = self._metrics.dedup_snapshots()
            snapshots.add_metric(["ok"], float(n_ok))
            snapshots.add_metric(["error"], float(n_failed))
            age.add_metric([], float(age_s))
            unsaved.add_metric([], float(n_unsaved))
        yield snapshots
        yield age
        yield unsaved
