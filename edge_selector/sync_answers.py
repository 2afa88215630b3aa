"""What the uploader does with the server's answer to a batch: :class:`BatchSettlement`.

- 200 ``BatchResult`` (:meth:`BatchSettlement.answered`): ``accepted`` and ``duplicate`` frames
  are acked, ``rejected`` ones dropped under their reason's code, frames it does not mention
  left claimed (the uploader releases them). An answer that does not parse, or names frames that
  were not sent, settles nothing and asks for a backoff.
- 400 or 413 (:meth:`BatchSettlement.refused`): for several frames the batch size halves; for
  one frame it is dropped as ``bad_request`` / ``payload_too_large`` and the size restored,
  unless :data:`MAX_LONE_REFUSALS` frames in a row were refused alone (then the server refuses
  everything and the frames are kept).

The network, the retries and the backoff delays stay in :class:`edge_selector.sync.Uploader`.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import httpx

from edge_selector.buffer import BufferedFrame, FrameBuffer
from edge_selector.sync_outcomes import SyncOutcome, SyncTally, check_answer, rejected_by_code

__all__ = ["BACK_OFF", "MAX_LONE_REFUSALS", "BatchSettlement"]

log = logging.getLogger("edge_selector.sync")

BACK_OFF = -1.0
"""``wait_s`` of an outcome that :meth:`edge_selector.sync.Uploader.upload_once` replaces with a
backoff delay."""

MAX_LONE_REFUSALS = 8
"""Frames refused alone (400/413) in a row, with no frame taken in between, after which the
uploader stops dropping them: a server that refuses everything (say, a schema version it does
not speak) must not empty the buffer. Those frames stay and are retried with backoff."""


class BatchSettlement:
    """Acks or drops a sent batch's frames by the server's answer, and sizes the next batch.

    Args:
        buffer: the frame buffer the frames were claimed from.
        tally: the uploader's counters.
        server: the server's base URL (for messages).
        batch_frames: the configured most frames per batch; :attr:`limit` starts there.

    Attributes:
        limit: the most frames the next batch claims (halved by 400/413 answers).
    """

    def __init__(self, buffer: FrameBuffer, tally: SyncTally, server: str, batch_frames: int):
        self.buffer = buffer
        self.batch_frames = batch_frames
        self.limit = batch_frames
        self._tally = tally
        self._server = server
        self._lone_refusals = 0  # frames refused alone since the server last took one

    def answered(
        self,
        frames: list[BufferedFrame],
        response: httpx.Response,
        base: SyncOutcome,
        fields: dict[str, Any],
        *,
        recovering: bool = False,
    ) -> SyncOutcome:
        """Ack, drop or leave each frame as a 200 answer says.

        Args:
            frames: the frames sent, still claimed.
            response: the 200 answer.
            base: the outcome so far (``batch_id``, ``sent``, ``http_status``).
            fields: log fields of the upload.
            recovering: the upload follows failures (logged at INFO instead of DEBUG).
        """
        sent = {f.device_seq: f.frame_id for f in frames}
        result, problem = check_answer(response.content, base.batch_id or "", sent)
        if result is None:
            error = f"bad answer from {self._server}: {problem}"
            self._tally.add(error, protocol_errors=1)
            log.warning("upload answer refused", extra={**fields, "error": error})
            return replace(base, error=error, wait_s=BACK_OFF)
        acked = [r.device_seq for r in result.results if r.status != "rejected"]
        if acked:
            self._lone_refusals = 0
        rejected = rejected_by_code(result)
        self.buffer.ack(acked)
        for code, seqs in rejected.items():
            self.buffer.drop(seqs, code)
        counts = {code: len(seqs) for code, seqs in rejected.items()}
        accepted, duplicates = result.count("accepted"), result.count("duplicate")
        self._tally.reject(counts)
        self._tally.add(
            uploaded=len(acked),
            accepted=accepted,
            duplicates=duplicates,
            unanswered=len(frames) - len(result.results),
        )
        level = logging.INFO if recovering else logging.DEBUG
        extra = {**fields, "accepted": accepted, "duplicates": duplicates, "rejected": counts}
        log.log(level, "batch uploaded", extra=extra)
        return replace(
            base, acked=len(acked), accepted=accepted, duplicates=duplicates, rejected=counts
        )

    def refused(
        self, frames: list[BufferedFrame], message: str, base: SyncOutcome, fields: dict[str, Any]
    ) -> SyncOutcome:
        """A 400 or 413: halve the batch size, or drop the frame that was refused alone."""
        status = base.http_status
        if len(frames) > 1:
            self.limit = max(1, len(frames) // 2)
            error = f"HTTP {status} for {len(frames)} frames: {message}; next batch {self.limit}"
            self._tally.add(error, client_errors=1)
            log.warning("batch refused, splitting", extra={**fields, "error": error})
            return replace(base, error=error)
        code = "bad_request" if status == 400 else "payload_too_large"
        seq = frames[0].device_seq
        if self._lone_refusals >= MAX_LONE_REFUSALS:  # the server refuses everything: keep them
            error = (
                f"HTTP {status} for frame {seq} alone after {self._lone_refusals} frames refused "
                f"alone in a row: the server refuses every frame ({message}); keeping them"
            )
            self._tally.add(error, client_errors=1)
            log.error("server refuses every frame, not dropping", extra={**fields, "error": error})
            return replace(base, error=error, wait_s=BACK_OFF)
        self._lone_refusals += 1
        self.buffer.drop([seq], code)
        self.limit = self.batch_frames
        error = f"HTTP {status} for frame {seq} alone: {message}; dropped as {code}"
        self._tally.add(error, client_errors=1)
        self._tally.reject({code: 1})
        log.warning("frame refused alone, dropped", extra={**fields, "error": error})
        return replace(base, rejected={code: 1}, error=error)
