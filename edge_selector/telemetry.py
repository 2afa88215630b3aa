"""The selector's counters, as one flat map: for the heartbeat, Prometheus and the summary.

:class:`Telemetry` reads the counters where they live (the selector's decisions, the uploader's
answers, the buffer's stats) whenever asked; nothing is counted twice. Names follow
:data:`curator.wire.COUNTER_PATTERN`:

- ``frames.seen``, ``frames.kept``, ``dropped.<reason>``
  (:data:`~edge_selector.selector.DROP_REASONS`), ``evicted``, ``source.skipped`` (corrupt
  frames the decoder skipped);
- ``sync.*`` from :class:`edge_selector.sync_outcomes.SyncCounters` (``sync.uploaded``,
  ``sync.rejected.<code>``, ``sync.transport_errors``, ...);
- ``model.updates``, ``model.update_errors``, ``model.check_errors`` from
  :class:`edge_selector.models.ModelUpdater` (with ``--server``);
- ``buffer.frames``, ``buffer.bytes`` (gauges, in the heartbeat's own fields too).

Prometheus (``--metrics-port``): ``curator_edge_frames_seen_total``,
``curator_edge_frames_kept_total``, ``curator_edge_frames_dropped_total{reason}``,
``curator_edge_frames_evicted_total``, ``curator_edge_frames_uploaded_total``,
``curator_edge_upload_rejected_total{reason}``, ``curator_edge_sync_events_total{event}``,
``curator_edge_model_updates_total``, ``curator_edge_model_update_errors_total``,
``curator_edge_buffer_frames``, ``curator_edge_buffer_bytes``, ``curator_edge_buffer_max_bytes``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from curator.wire import DeviceHeartbeat

if TYPE_CHECKING:
    from edge_selector.buffer import FrameBuffer
    from edge_selector.models import ModelUpdater
    from edge_selector.selector import Selector
    from edge_selector.sync import Uploader

__all__ = ["Telemetry", "fit_counters"]

_MAX_NAME = 64
_MAX_COUNTERS = 128


def fit_counters(counters: dict[str, int]) -> dict[str, int]:
    """``counters`` within what a heartbeat carries (:data:`curator.wire.COUNTER_PATTERN`).

    Names are lower-cased, characters outside ``[a-z0-9_.]`` become ``_`` and long names are
    cut to 64 characters (counts that then share a name are added). Past 128 names, the
    ``sync.rejected.*`` counts beyond the room left are added into ``sync.rejected.other``.
    """
    fitted: dict[str, int] = {}
    for name, value in counters.items():
        clean = re.sub(r"[^a-z0-9_.]", "_", name.lower())[:_MAX_NAME]
        if not clean[:1].isalpha():
            clean = ("c" + clean)[:_MAX_NAME]
        fitted[clean] = fitted.get(clean, 0) + int(value)
    if len(fitted) <= _MAX_COUNTERS:
        return fitted
    rejected = sorted(k for k in fitted if k.startswith("sync.rejected."))
    keep = _MAX_COUNTERS - (len(fitted) - len(rejected)) - 1
    other = sum(fitted.pop(k) for k in rejected[max(keep, 0) :])
    fitted["sync.rejected.other"] = fitted.get("sync.rejected.other", 0) + other
    return dict(list(fitted.items())[:_MAX_COUNTERS])


class Telemetry:
    """Counters of one selector process.

    Args:
        selector: the capture loop's selector.
        buffer: its buffer.
        uploader: the uploader, or None when offline.
        skipped: returns how many corrupt frames the source skipped.
        device_id: for the heartbeat.
        software_version: for the heartbeat.
        wallclock: aware UTC now.
        updater: the model updater, or None when offline.
    """

    def __init__(
        self,
        selector: Selector,
        buffer: FrameBuffer,
        uploader: Uploader | None,
        *,
        skipped: Callable[[], int] = lambda: 0,
        device_id: str = "local",
        software_version: str = "0",
        wallclock: Callable[[], datetime] | None = None,
        updater: ModelUpdater | None = None,
    ) -> None:
        self.selector, self.buffer, self.uploader = selector, buffer, uploader
        self._skipped = skipped
        self.device_id, self.software_version = device_id, software_version
        self._wallclock = wallclock or (lambda: datetime.now(UTC))
        self.updater = updater

    def counters(self) -> dict[str, int]:
        """Every counter since the process started, by name."""
        out = {"frames.seen": 0, "frames.kept": 0, "evicted": 0}
        out.update(self.selector.counts)
        out["source.skipped"] = int(self._skipped())
        if self.uploader is not None:
            out.update(self.uploader.counters.flat())
        if self.updater is not None:
            out.update(self.updater.counts)
        return dict(sorted(out.items()))

    def heartbeat(self) -> DeviceHeartbeat:
        """The heartbeat to send now."""
        stats = self.buffer.stats()
        return DeviceHeartbeat(
            device_id=self.device_id,
            sent_at=self._wallclock(),
            started_at=self.selector.started_at,
            model_version=self.selector.model.model_version,
            software_version=self.software_version,
            counters=fit_counters(self.counters()),
            buffer_frames=stats.frames,
            buffer_bytes=stats.file_bytes,
            buffer_max_bytes=stats.max_bytes,
            last_device_seq=stats.last_device_seq,
        )

    def collect(self) -> Iterator[Any]:
        """Prometheus metric families (the ``Collector`` protocol of prometheus_client)."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        counts = self.counters()
        simple = (
            ("frames_seen", "frames.seen", "Frames decoded from the source."),
            ("frames_kept", "frames.kept", "Frames kept in the buffer."),
            ("frames_evicted", "evicted", "Buffered frames evicted for more valuable ones."),
            ("frames_uploaded", "sync.uploaded", "Frames the server answered for (acked)."),
            ("source_skipped", "source.skipped", "Corrupt frames the decoder skipped."),
            ("model_updates", "model.updates", "New models swapped in."),
            ("model_update_errors", "model.update_errors", "Offered models refused."),
        )
        for name, key, doc in simple:
            yield CounterMetricFamily(f"curator_edge_{name}", doc, value=counts.get(key, 0))
        dropped = CounterMetricFamily(
            "curator_edge_frames_dropped", "Frames not kept, by reason.", labels=["reason"]
        )
        rejected = CounterMetricFamily(
            "curator_edge_upload_rejected",
            "Frames the server rejected, by reason.",
            labels=["reason"],
        )
        events = CounterMetricFamily(
            "curator_edge_sync_events",
            "Uploader events (errors, batches, bytes).",
            labels=["event"],
        )
        for key, value in counts.items():
            if key.startswith("dropped."):
                dropped.add_metric([key.removeprefix("dropped.")], value)
            elif key.startswith("sync.rejected."):
                rejected.add_metric([key.removeprefix("sync.rejected.")], value)
            elif key.startswith("sync.") and key != "sync.uploaded":
                events.add_metric([key.removeprefix("sync.")], value)
        yield from (dropped, rejected, events)
        stats = self.buffer.stats()
        for name, value, doc in (
            ("buffer_frames", stats.frames, "Frames waiting in the buffer."),
            ("buffer_bytes", stats.file_bytes, "Bytes of the buffer's files on disk."),
            ("buffer_max_bytes", stats.max_bytes, "The buffer's byte cap."),
        ):
            yield GaugeMetricFamily(f"curator_edge_{name}", doc, value=value)
