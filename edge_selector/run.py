"""``edge-selector run``: capture, decide and upload until the source ends or a signal comes.

Threads, each with one job:

- **decode** reads the source (:func:`curator.data.video.read_frames`) in batches of
  ``batch_size`` frames;
- **prepare** runs :meth:`edge_selector.selector.Selector.prepare` on each: resize, quality
  gates, normalisation (numpy, which mostly releases the GIL, so this overlaps inference);
- **capture** (the calling thread) runs :meth:`edge_selector.selector.Selector.decide`: one
  inference call, scores, decisions, buffer writes;
- **upload** (when ``--server`` is given) runs :meth:`edge_selector.sync.Uploader.run`: batches
  most valuable first, backoff, heartbeats;
- **model-updates** (when ``--server`` is given) runs :meth:`edge_selector.models.ModelUpdater.run`
  every ``model_poll_s``: download, verify, install; the capture thread swaps the new model in
  between two batches (:meth:`edge_selector.selector.Selector.swap_model`);
- **metrics** (``--metrics-port``) serves Prometheus text.

At start-up an updated model recorded in ``model_dir`` replaces ``--model``
(:func:`edge_selector.model_store.installed_model`).

Stages hand over through one-slot queues, and every wait gives up when the run stops.
``stop`` (set by SIGTERM/SIGINT in the CLI) ends capture after the batch in hand; the state is
saved, the uploader finishes its request, and :func:`run` returns a :class:`RunSummary`. After a
finite source ends, uploading goes on until the buffer is empty or ``drain_timeout_s`` passes.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, TextIO

from curator.data.video import FrameReader, VideoFrame, read_frames
from curator.errors import CuratorError
from curator.inference import OnnxModel
from curator.wire import DeviceHeartbeat
from edge_selector.buffer import FrameBuffer
from edge_selector.model_store import ModelLoader, installed_model
from edge_selector.models import ModelUpdater
from edge_selector.selector import Selector
from edge_selector.settings import EdgeSettings
from edge_selector.sync import Uploader
from edge_selector.sync_outcomes import SyncAuthError
from edge_selector.telemetry import Telemetry

__all__ = ["RunSummary", "run", "software_version"]

log = logging.getLogger(__name__)

_QUEUE_BATCHES = 1  # one batch ahead per stage is enough to overlap; each is ~10-20 MB
_END = object()


def software_version() -> str:
    """This package's version, for heartbeats."""
    try:
        return version("curator")
    except PackageNotFoundError:  # pragma: no cover - a source tree without metadata
        return "0+unknown"


@dataclass(frozen=True)
class RunSummary:
    """What a run did.

    Attributes:
        counters: :meth:`Telemetry.counters` at the end.
        buffered: frames left in the buffer.
        seconds: wall time of the run.
        stopped: True when a signal (``stop``) ended it before the source did.
    """

    counters: dict[str, int]
    buffered: int
    seconds: float
    stopped: bool

    def lines(self) -> list[str]:
        """The human summary printed at the end."""
        c = self.counters
        seen, kept = c.get("frames.seen", 0), c.get("frames.kept", 0)
        rate = seen / self.seconds if self.seconds > 0 else 0.0
        drops = {k.removeprefix("dropped."): v for k, v in c.items() if k.startswith("dropped.")}
        lines = [
            f"frames: {seen} seen, {kept} kept ({kept / max(seen, 1):.1%}), "
            f"{c.get('source.skipped', 0)} corrupt skipped, {rate:.1f} frames/s",
            "dropped: " + (", ".join(f"{k} {v}" for k, v in sorted(drops.items())) or "none"),
            f"buffer: {self.buffered} frames waiting, {c.get('evicted', 0)} evicted",
        ]
        if "sync.uploaded" in c:
            rejected = sum(v for k, v in c.items() if k.startswith("sync.rejected."))
            lines.append(
                f"upload: {c['sync.uploaded']} acked ({c.get('sync.duplicates', 0)} duplicates), "
                f"{rejected} rejected, {c.get('sync.transport_errors', 0)} transport errors"
            )
        return lines


def _source(text: str) -> str | int:
    return int(text) if text.isdigit() else text


def _batches(
    reader: FrameReader, size: int, fps: float | None, stop: threading.Event
) -> Iterator[list[VideoFrame]]:
    """Batches of ``size`` frames; with ``fps``, frame ``n`` is not read before ``n / fps`` s."""
    batch: list[VideoFrame] = []
    start = time.monotonic()
    for n, frame in enumerate(reader):
        if fps is not None:
            stop.wait(max(0.0, start + n / fps - time.monotonic()))
        batch.append(frame)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _offer(out: queue.Queue[Any], item: object, stop: threading.Event) -> bool:
    """Put ``item`` into ``out``, giving up when ``stop`` is set; whether it went in."""
    while not stop.is_set():
        try:
            out.put(item, timeout=0.2)
            return True
        except queue.Full:
            continue
    return False


def _stage(
    items: Iterable[Any], work: Callable[[Any], Any], out: queue.Queue[Any], stop: threading.Event
) -> None:
    """A feeding thread: ``work(item)`` of each item into ``out`` (None results skipped), then
    ``_END``; an exception goes into ``out`` instead, for the capture loop to raise."""
    try:
        for item in items:
            done = work(item)
            if done is not None and not _offer(out, done, stop):
                return
    except BaseException as exc:
        _offer(out, exc, stop)
    _offer(out, _END, stop)


def _drained(source: queue.Queue[Any], stop: threading.Event) -> Iterator[Any]:
    """Items of ``source`` until ``_END``; an exception found there is passed on as an item."""
    while not stop.is_set():
        try:
            item = source.get(timeout=0.2)
        except queue.Empty:
            continue
        if item is _END:
            return
        yield item
        if isinstance(item, BaseException):
            return


def open_model(settings: EdgeSettings) -> OnnxModel:
    """The model the settings name (contract-checked)."""
    assert settings.model is not None
    return model_loader(settings)(settings.model)


def model_loader(settings: EdgeSettings) -> ModelLoader:
    """Opens a model file with the settings' output mapping and threads (updates too)."""

    def load(path: Path) -> OnnxModel:
        return OnnxModel(
            path,
            output_names=settings.output_names(),
            input_name=settings.input_name,
            intra_op_threads=settings.inference_threads(),
        )

    return load


def run(
    settings: EdgeSettings,
    stop: threading.Event,
    *,
    progress: TextIO | None = None,
    on_batch: Callable[[Selector], None] | None = None,
) -> RunSummary:
    """Run the selector with ``settings`` until the source ends or ``stop`` is set.

    Args:
        settings: validated settings with ``source`` and ``model``.
        stop: set it to end the run cleanly.
        progress: where to draw a progress bar (None: none).
        on_batch: called after each batch (tests, embedding).

    Raises:
        DatasetError: the source cannot be opened.
        ModelContractError: the model breaks the contract.
        SyncAuthError: the server refused the token.
        CuratorError, OSError: the buffer cannot be opened.
    """
    if settings.source is None or settings.model is None:
        raise CuratorError("run needs --source and --model")
    began = time.monotonic()
    given = open_model(settings)
    model = installed_model(given, settings.models_folder, model_loader(settings))
    reader = read_frames(
        _source(settings.source), loop=settings.loop, max_frames=settings.max_frames
    )
    live = isinstance(_source(settings.source), int) or "://" in settings.source
    buffer = FrameBuffer(settings.buffer, max_bytes=settings.max_buffer_bytes)
    upload_stop = threading.Event()
    failure: list[BaseException] = []
    threads: list[threading.Thread] = []
    metrics_server: Any = None
    uploader: Uploader | None = None
    updater: ModelUpdater | None = None
    try:
        selector = Selector(
            model, buffer, settings.policy(), source=settings.source, resumable=not live
        )
        uploader = _uploader(settings, buffer, heartbeat=lambda: telemetry.heartbeat())
        updater = _updater(settings, model, given.sha256)
        telemetry = Telemetry(
            selector,
            buffer,
            uploader,
            skipped=lambda: reader.skipped,
            device_id=settings.device_id or "local",
            software_version=software_version(),
            updater=updater,
        )
        if uploader is not None:
            threads.append(_start(_upload, uploader, upload_stop, failure, stop, name="upload"))
        if updater is not None:
            poll_s = settings.model_poll_s
            threads.append(_start(updater.run, upload_stop, poll_s, name="model-updates"))
        if settings.metrics_port is not None:
            metrics_server = _serve_metrics(telemetry, settings)
        log.info(
            "selector started",
            extra={"source": settings.source, "model_version": model.model_version,
                   "buffer": str(settings.buffer), "server": settings.server},
        )  # fmt: skip
        # decode -> prepare (resize, gates, normalise) -> this thread (inference, decisions)
        decoded: queue.Queue[Any] = queue.Queue(maxsize=_QUEUE_BATCHES)
        prepared: queue.Queue[Any] = queue.Queue(maxsize=_QUEUE_BATCHES)
        feed_stop = threading.Event()
        frames = _batches(reader, settings.batch_size, settings.fps, feed_stop)
        threads.append(_start(_stage, frames, lambda b: b, decoded, feed_stop))
        prepare, upstream = _prepare(selector), _drained(decoded, feed_stop)
        threads.append(_start(_stage, upstream, prepare, prepared, feed_stop, name="prepare"))
        started = None if live else datetime.now(UTC)
        bar = _progress_bar(progress, reader.length)
        try:
            for item in _drained(prepared, stop):
                if isinstance(item, BaseException):
                    raise item
                selector.decide(item, started)
                fresh = None if updater is None else updater.take()
                if fresh is not None:  # between batches; decide() re-prepares older batches
                    selector.swap_model(fresh)
                if bar is not None:
                    bar.update(len(item.frames))
                if on_batch is not None:
                    on_batch(selector)
        finally:
            feed_stop.set()
            selector.save()
            if bar is not None:
                bar.close()
        stopped = stop.is_set()
        if uploader is not None and not stopped:
            _drain(buffer, settings.drain_timeout_s, stop, failure)
        upload_stop.set()
        for t in threads:
            t.join(timeout=60)
        if failure:
            raise failure[0]
        if uploader is not None:
            uploader.send_heartbeat()
        return RunSummary(telemetry.counters(), buffer.stats().frames, time.monotonic() - began,
                          stopped)  # fmt: skip
    finally:
        upload_stop.set()
        if metrics_server is not None:
            metrics_server.shutdown()
        for t in threads:
            t.join(timeout=60)
        if uploader is not None:
            uploader.close()
        if updater is not None:
            updater.close()
        reader.close()
        buffer.close()


def _prepare(selector: Selector) -> Callable[[Any], Any]:
    """The prepare stage's work: an exception from upstream passes through to the loop."""

    def work(item: Any) -> Any:
        if isinstance(item, BaseException):
            raise item
        return selector.prepare(item)

    return work


def _start(target: Callable[..., None], *args: Any, name: str = "decode") -> threading.Thread:
    thread = threading.Thread(target=target, args=args, name=name, daemon=True)
    thread.start()
    return thread


def _uploader(
    settings: EdgeSettings, buffer: FrameBuffer, heartbeat: Callable[[], DeviceHeartbeat]
) -> Uploader | None:
    if settings.server is None:
        return None
    assert settings.token is not None and settings.device_id is not None
    kbps = settings.bandwidth_kbps
    return Uploader(
        buffer,
        server=settings.server,
        token=settings.token.get_secret_value(),
        device_id=settings.device_id,
        batch_frames=settings.upload_batch_frames,
        bandwidth_bytes_per_s=None if kbps is None else kbps * 1000.0,
        heartbeat=heartbeat,
        heartbeat_interval_s=settings.heartbeat_interval_s,
    )


def _updater(settings: EdgeSettings, model: OnnxModel, given_sha256: str) -> ModelUpdater | None:
    if settings.server is None:
        return None
    assert settings.token is not None
    return ModelUpdater(
        model,
        server=settings.server,
        token=settings.token.get_secret_value(),
        model_dir=settings.models_folder,
        load=model_loader(settings),
        given_sha256=given_sha256,
    )


def _upload(
    uploader: Uploader,
    upload_stop: threading.Event,
    failure: list[BaseException],
    stop: threading.Event,
) -> None:
    """The upload thread; a refused token stops the whole run."""
    try:
        uploader.run(upload_stop)
    except SyncAuthError as exc:
        failure.append(exc)
        stop.set()


def _drain(
    buffer: FrameBuffer, timeout_s: float, stop: threading.Event, failure: list[BaseException]
) -> None:
    deadline = time.monotonic() + timeout_s
    while not stop.is_set() and not failure and time.monotonic() < deadline:
        if buffer.stats().frames == 0:
            return
        stop.wait(0.2)


def _progress_bar(stream: TextIO | None, total: int | None) -> Any:
    if stream is None:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="frame", file=stream, dynamic_ncols=True, smoothing=0.1)


def _serve_metrics(telemetry: Telemetry, settings: EdgeSettings) -> Any:
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry(auto_describe=False)
    registry.register(telemetry)
    assert settings.metrics_port is not None
    server, _ = start_http_server(settings.metrics_port, settings.metrics_host, registry)
    return server
