"""What the uploader reports: :class:`SyncOutcome` per call, :class:`SyncCounters` since start,
and :class:`SyncAuthError`. :mod:`edge_selector.sync` re-exports all three.

Also the pieces of one upload that need no network: :func:`batch_id_for` (the same frames give
the same ``batch_id``, so a retry is the same batch in the server's logs), :func:`check_answer`
(a 200 answer must name only frames that were sent, each with its own ``frame_id``) and
:func:`rejected_by_code` (the rejected frames by the code the buffer counts them under).
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields

from pydantic import ValidationError

from curator.errors import CuratorError
from curator.wire import BatchResult

__all__ = [
    "SyncAuthError",
    "SyncCounters",
    "SyncOutcome",
    "SyncTally",
    "batch_id_for",
    "check_answer",
    "rejected_by_code",
]


_NOT_CODE = re.compile(r"[^a-z0-9_.-]+")


class SyncAuthError(CuratorError):
    """The server refused the device's token (HTTP 401 or 403): retrying cannot help.

    The message is one line naming the status, the server and the server's own message; the
    token itself is never in it.
    """


@dataclass(frozen=True)
class SyncOutcome:
    """What one :meth:`edge_selector.sync.Uploader.upload_once` did.

    Attributes:
        sent: frames in the request sent (0 when the buffer was empty or nothing was sent).
        acked: frames the server answered ``accepted`` or ``duplicate``, deleted from the buffer.
        accepted: of those, ``accepted``.
        duplicates: of those, ``duplicate``.
        rejected: frames dropped from the buffer, by reason code (the server's ``rejected``
            reasons, ``bad_request`` or ``payload_too_large`` for a frame refused alone).
        released: claimed frames handed back to the buffer unanswered (they will be re-sent).
        error: what went wrong, one line; None when the server answered the batch.
        http_status: the answer's status; None when there was no answer (or no request).
        batch_id: the batch's id; None when nothing was claimed.
        wait_s: how long the uploader suggests waiting before the next call: 0 to go on at
            once, the poll interval when the buffer was empty, the backoff delay after an error.
    """

    sent: int = 0
    acked: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    released: int = 0
    error: str | None = None
    http_status: int | None = None
    batch_id: str | None = None
    wait_s: float = 0.0


@dataclass(frozen=True)
class SyncCounters:
    """The uploader's counters since it was made (a snapshot).

    Attributes:
        uploaded: frames acked (accepted + duplicates).
        accepted, duplicates: acked frames by the server's answer.
        rejected: frames dropped, by reason code.
        released: claimed frames handed back unanswered (transport errors, error answers).
        unanswered: of those, frames a 200 answer did not mention.
        batches_sent: requests that got an HTTP answer of any status.
        bytes_sent: body bytes of those requests.
        transport_errors: requests without an answer (refused, reset, timed out).
        server_errors: 5xx and 429 answers.
        auth_errors: 401 and 403 answers (batches and heartbeats).
        client_errors: other answers that are not 200 (400, 413, 415, 404, a redirect ...).
        protocol_errors: 200 answers that did not parse or named frames not sent.
        internal_errors: unexpected exceptions the run loop logged and backed off from.
        heartbeats_sent: heartbeats the server acknowledged.
        heartbeat_errors: heartbeats that failed (not counted elsewhere).
    """

    uploaded: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    released: int = 0
    unanswered: int = 0
    batches_sent: int = 0
    bytes_sent: int = 0
    transport_errors: int = 0
    server_errors: int = 0
    auth_errors: int = 0
    client_errors: int = 0
    protocol_errors: int = 0
    internal_errors: int = 0
    heartbeats_sent: int = 0
    heartbeat_errors: int = 0

    def flat(self, prefix: str = "sync.") -> dict[str, int]:
        """Every counter by a name fit for a heartbeat (``curator.wire.COUNTER_PATTERN``):
        ``sync.uploaded``, ..., ``sync.rejected.<code>`` (``-`` in a code becomes ``_``)."""
        out: dict[str, int] = {}
        for f in fields(self):
            if f.name != "rejected":
                out[f"{prefix}{f.name}"] = getattr(self, f.name)
        for code, n in sorted(self.rejected.items()):
            out[f"{prefix}rejected.{code.replace('-', '_')}"] = n
        return out


class SyncTally:
    """The mutable, thread-safe counters behind :class:`SyncCounters`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._rejected: Counter[str] = Counter()
        self.last_error: str | None = None

    def add(self, error: str | None = None, **counts: int) -> None:
        """Add ``counts`` (names of :class:`SyncCounters` fields); record ``error`` if given."""
        with self._lock:
            self._counts.update(counts)
            if error is not None:
                self.last_error = error

    def reject(self, reasons: Mapping[str, int]) -> None:
        """Count dropped frames by reason code."""
        with self._lock:
            self._rejected.update(reasons)

    def snapshot(self) -> SyncCounters:
        """The counters now."""
        with self._lock:
            return SyncCounters(**dict(self._counts), rejected=dict(sorted(self._rejected.items())))


def batch_id_for(device_id: str, device_seqs: Iterable[int]) -> str:
    """A ``batch_id`` that depends only on the device and the set of frames.

    ``b<first>-<last>-<16 hex digits of sha256(device_id, sorted seqs)>``, at most 64 characters
    of ``[A-Za-z0-9._-]``; the same frames in any order give the same id.
    """
    seqs = sorted(set(device_seqs))
    digest = hashlib.sha256(f"{device_id}\n{','.join(map(str, seqs))}".encode()).hexdigest()
    return f"b{seqs[0]}-{seqs[-1]}-{digest[:16]}" if seqs else f"b-{digest[:16]}"


def check_answer(
    content: bytes, batch_id: str, sent: Mapping[int, str]
) -> tuple[BatchResult | None, str | None]:
    """Parse a 200 answer to the batch ``batch_id`` of frames ``sent`` (device_seq -> frame_id).

    Returns:
        ``(result, None)`` when it answers only frames that were sent, each once and with its
        own ``frame_id``; ``(None, problem)`` otherwise (frames it leaves out are fine: the
        caller releases them).
    """
    try:
        result = BatchResult.model_validate_json(content)
    except ValidationError as exc:
        first = exc.errors()[0] if exc.errors() else {"msg": str(exc)}
        return None, f"answer is not a BatchResult: {first.get('msg', exc)}"
    if result.batch_id != batch_id:
        return None, f"answer is for batch {result.batch_id!r}, not {batch_id!r}"
    seen: set[int] = set()
    for r in result.results:
        if r.device_seq not in sent:
            return None, f"answer names device_seq {r.device_seq}, which was not sent"
        if r.device_seq in seen:
            return None, f"answer names device_seq {r.device_seq} twice"
        if r.frame_id != sent[r.device_seq]:
            return None, f"answer gives device_seq {r.device_seq} another frame_id"
        seen.add(r.device_seq)
    return result, None


def rejected_by_code(result: BatchResult) -> dict[str, list[int]]:
    """The ``device_seq`` of each ``rejected`` frame, grouped by its reason's code as the
    buffer counts it: the part before ``:``, lowercased, other characters than
    ``[a-z0-9_.-]`` replaced by ``_``, at most 64 characters (``"rejected"`` if nothing is left).
    """
    groups: dict[str, list[int]] = {}
    for r in result.results:
        if r.status == "rejected":
            head = (r.reason or "").split(":", 1)[0].strip().lower()
            code = _NOT_CODE.sub("_", head).strip("_")[:64] or "rejected"
            groups.setdefault(code, []).append(r.device_seq)
    return groups
