"""The uploader: drains the frame buffer to the server, most valuable first.

:class:`Uploader` claims a batch from the :class:`~edge_selector.buffer.FrameBuffer`, encodes
it (:func:`curator.wire.encode_batch`) with a ``batch_id`` that depends only on its frames,
waits on the bandwidth cap and posts it (:class:`~edge_selector.sync_http.ServerLink`). Uploads
are idempotent on the server, so every failure is handled by giving the frames back and trying
again later. Per answer (200, 400 and 413: :mod:`edge_selector.sync_answers`):

- 200 ``BatchResult``: ``accepted`` and ``duplicate`` frames are acked, ``rejected`` ones
  dropped under their reason's code, frames it does not mention released.
- 200 that does not parse, or names frames that were not sent: all released, counted as a
  protocol error, backoff.
- no answer, 5xx, 429: all released, backoff (a 429/503 ``Retry-After`` is honoured).
- 401, 403: all released, :class:`SyncAuthError` raised (a wrong token stops the device).
- 400, 413 for several frames: all released, the batch size halves and the next call retries
  at once, so a frame the server refuses ends up alone; 400/413 for one frame: dropped as
  ``bad_request`` / ``payload_too_large`` and the batch size restored. The size stays halved
  until then (a server whose body limit is below ``batch_bytes`` keeps getting smaller batches).
- any other answer (other 4xx, an unfollowed redirect): all released, backoff.

:meth:`Uploader.run` loops until stopped and sends a :class:`curator.wire.DeviceHeartbeat`
every ``heartbeat_interval_s`` (:mod:`edge_selector.sync_heartbeat`). Backoff and bandwidth:
:mod:`edge_selector.backoff`.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import httpx

from curator.errors import InvalidInputError
from curator.wire import MAX_FRAMES, BatchUpload, DeviceHeartbeat, encode_batch
from edge_selector.backoff import Backoff, BandwidthCap
from edge_selector.buffer import BufferedFrame, FrameBuffer
from edge_selector.sync_answers import BACK_OFF, MAX_LONE_REFUSALS, BatchSettlement
from edge_selector.sync_heartbeat import send_heartbeat
from edge_selector.sync_http import (
    ServerLink,
    describe_transport_error,
    error_message,
    retry_after_s,
)
from edge_selector.sync_outcomes import (
    SyncAuthError,
    SyncCounters,
    SyncOutcome,
    SyncTally,
    batch_id_for,
)

__all__ = ["MAX_LONE_REFUSALS", "SyncAuthError", "SyncCounters", "SyncOutcome", "Uploader"]

log = logging.getLogger(__name__)

_DEVICE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class Uploader:
    """Sends the buffer's frames to the server in batches and acks what it answered for.

    Args:
        buffer: the frame buffer to drain.
        server: the server's base URL, e.g. ``http://10.0.0.5:8000``.
        token: the device's bearer token (never logged).
        device_id: the device; every batch and record carries it.
        batch_frames: most frames per batch (1 .. ``curator.wire.MAX_FRAMES``).
        batch_bytes: most buffer bytes (``cost_bytes``) per batch; the first frame always goes.
        bandwidth_bytes_per_s: average upload rate cap, in body bytes; None: unlimited.
        timeout_s: per-request timeout.
        max_backoff_s: longest wait after consecutive errors (backoff starts at 0.5 s).
        poll_interval_s: how long :meth:`run` waits when the buffer is empty.
        heartbeat: makes the heartbeat :meth:`run` sends; None: no heartbeats.
        heartbeat_interval_s: seconds between heartbeats.
        clock: monotonic seconds; default :func:`time.monotonic`.
        sleep: waits a number of seconds; default: waits on the stop event of :meth:`run`, so
            setting it interrupts every wait (backoff, poll, bandwidth).
        rng: numpy Generator, int seed or None; the backoff's jitter.
        client: the ``httpx.Client`` to use (e.g. on an ``httpx.MockTransport``); default:
            one the uploader makes and :meth:`close` closes.

    One thread uploads at a time (calls are serialised); :attr:`counters` and
    :attr:`last_error` may be read from any thread.

    Raises:
        InvalidInputError: a bad argument (the message names it).
    """

    def __init__(
        self,
        buffer: FrameBuffer,
        *,
        server: str,
        token: str,
        device_id: str,
        batch_frames: int = 32,
        batch_bytes: int = 4 * 2**20,
        bandwidth_bytes_per_s: float | None = None,
        timeout_s: float = 30.0,
        max_backoff_s: float = 60.0,
        poll_interval_s: float = 1.0,
        heartbeat: Callable[[], DeviceHeartbeat] | None = None,
        heartbeat_interval_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] | None = None,
        rng: Any = None,
        client: httpx.Client | None = None,
    ) -> None:
        if not isinstance(device_id, str) or not _DEVICE_ID.fullmatch(device_id):
            raise InvalidInputError(f"device_id must be [A-Za-z0-9._-]{{1,64}}, got {device_id!r}")
        _check_count(batch_frames, "batch_frames", MAX_FRAMES)
        _check_count(batch_bytes, "batch_bytes", None)
        for name, value in (
            ("timeout_s", timeout_s),
            ("max_backoff_s", max_backoff_s),
            ("poll_interval_s", poll_interval_s),
            ("heartbeat_interval_s", heartbeat_interval_s),
        ):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InvalidInputError(f"{name} must be a positive number, got {value!r}")
            if not 0 < value < math.inf:
                raise InvalidInputError(f"{name} must be a positive number, got {value!r}")
        self.buffer = buffer
        self.device_id = device_id
        self.batch_frames, self.batch_bytes = batch_frames, batch_bytes
        self.poll_interval_s = float(poll_interval_s)
        self.heartbeat_interval_s = float(heartbeat_interval_s)
        self._link = ServerLink(server, token, timeout_s=float(timeout_s), client=client)
        self.server = self._link.server
        self._heartbeat = heartbeat
        self._clock = clock
        self._stop = threading.Event()  # run()'s event while it runs
        self._sleep: Callable[[float], object] = sleep or (lambda s: self._stop.wait(s))
        self._backoff = Backoff(min(0.5, max_backoff_s), max_backoff_s, rng=rng)
        self._cap = BandwidthCap(bandwidth_bytes_per_s, clock=clock, sleep=self._sleep)
        self._tally = SyncTally()
        self._settlement = BatchSettlement(buffer, self._tally, self.server, batch_frames)
        self._lock = threading.Lock()

    @property
    def counters(self) -> SyncCounters:
        """A snapshot of the counters."""
        return self._tally.snapshot()

    @property
    def last_error(self) -> str | None:
        """The last error seen, one line; None before any."""
        return self._tally.last_error

    def upload_once(self) -> SyncOutcome:
        """Claim one batch (most valuable first), send it and settle every claimed frame.

        Returns:
            What happened; ``sent == 0`` and no ``error`` when the buffer had nothing to send.

        Raises:
            SyncAuthError: the server answered 401 or 403 (the frames were released).
        """
        with self._lock:
            frames = self.buffer.claim(self._settlement.limit, max_bytes=self.batch_bytes)
            if not frames:
                return SyncOutcome(wait_s=self.poll_interval_s)
            try:
                outcome = self._send(frames)
            except SyncAuthError as exc:
                self._tally.add(str(exc), auth_errors=1)
                log.error("token refused", extra={"server": self.server, "error": str(exc)})
                raise
            finally:  # whatever was not acked or dropped goes back to the buffer
                released = self.buffer.release(f.device_seq for f in frames)
                self._tally.add(released=released)
            if outcome.error is None:
                self._backoff.reset()
            elif outcome.wait_s == BACK_OFF:
                outcome = replace(outcome, wait_s=self._backoff.next_delay())
            return replace(outcome, released=released)

    def send_heartbeat(self) -> bool:
        """Post the ``heartbeat`` callable's heartbeat; failures are logged and counted.

        Returns:
            Whether the server acknowledged it (False without a ``heartbeat`` callable).

        Raises:
            SyncAuthError: the server answered 401 or 403.
        """
        if self._heartbeat is None:
            return False
        return send_heartbeat(self._link, self._heartbeat, self._tally)

    def run(self, stop: threading.Event) -> None:
        """Upload until ``stop`` is set: at once while frames wait, every ``poll_interval_s``
        when the buffer is empty, after the backoff delay after an error; a heartbeat first and
        then every ``heartbeat_interval_s``. Unexpected exceptions are logged, counted
        (``internal_errors``) and backed off from.

        Raises:
            SyncAuthError: the server refused the token (batches or heartbeats).
        """
        self._stop = stop
        try:
            next_beat = self._clock() if self._heartbeat is not None else math.inf
            resume_at = self._clock()
            while not stop.is_set():
                now = self._clock()
                if now >= next_beat:
                    self.send_heartbeat()
                    next_beat = now + self.heartbeat_interval_s
                if now >= resume_at:
                    resume_at = self._clock() + self._upload_in_loop()
                pause = min(resume_at, next_beat) - self._clock()
                if pause > 0 and not stop.is_set():
                    self._sleep(pause)
        finally:
            self._stop = threading.Event()

    def close(self) -> None:
        """Close the HTTP client if the uploader made it."""
        self._link.close()

    def __enter__(self) -> Uploader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Uploader(server={self.server!r}, device_id={self.device_id!r})"

    # -- internals -------------------------------------------------------------------------

    def _upload_in_loop(self) -> float:
        """One :meth:`upload_once` for :meth:`run`; the seconds to wait after it."""
        try:
            return self.upload_once().wait_s
        except SyncAuthError:
            raise
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            log.exception("upload failed unexpectedly", extra={"error": error})
            self._tally.add(error, internal_errors=1)
            return self._backoff.next_delay()

    def _send(self, frames: list[BufferedFrame]) -> SyncOutcome:
        """Post ``frames`` as one batch and ack or drop what the answer says; the rest stays
        claimed for the caller to release."""
        batch_id = batch_id_for(self.device_id, (f.device_seq for f in frames))
        records = tuple(f.to_record(self.device_id) for f in frames)
        body = encode_batch(
            BatchUpload(batch_id=batch_id, device_id=self.device_id, frames=records)
        )
        self._cap.acquire(len(body))
        if self._stop.is_set():
            return SyncOutcome(batch_id=batch_id, error="stopped before sending")
        fields: dict[str, Any] = {"batch_id": batch_id, "frames": len(frames), "bytes": len(body)}
        try:
            response = self._link.post_batch(body)
        except SyncAuthError:
            self._tally.add(batches_sent=1, bytes_sent=len(body))
            raise
        except httpx.TransportError as exc:
            error = f"no answer from {self.server}: {describe_transport_error(exc)}"
            self._tally.add(error, transport_errors=1)
            log.warning("upload failed", extra={**fields, "error": error})
            return SyncOutcome(sent=len(frames), batch_id=batch_id, error=error, wait_s=BACK_OFF)
        status = fields["http_status"] = response.status_code
        self._tally.add(batches_sent=1, bytes_sent=len(body))
        base = SyncOutcome(sent=len(frames), batch_id=batch_id, http_status=status)
        if status == 200:
            recovering = self._backoff.failures > 0
            return self._settlement.answered(frames, response, base, fields, recovering=recovering)
        if status in (400, 413):
            return self._settlement.refused(frames, error_message(response), base, fields)
        error = f"HTTP {status} from {self.server}: {error_message(response)}"
        server_side = status >= 500 or status == 429
        self._tally.add(error, **{"server_errors" if server_side else "client_errors": 1})
        log.warning("upload failed", extra={**fields, "error": error})
        after = retry_after_s(response) if status in (429, 503) else None
        if after is None:
            return replace(base, error=error, wait_s=BACK_OFF)
        self._backoff.next_delay()  # still a failure: the next error waits longer
        return replace(base, error=error, wait_s=min(after, self._backoff.cap_s))


def _check_count(value: int, name: str, most: int | None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInputError(f"{name} must be a positive integer, got {value!r}")
    if most is not None and value > most:
        raise InvalidInputError(f"{name} must be at most {most}, got {value!r}")
