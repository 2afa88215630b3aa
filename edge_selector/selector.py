"""The per-frame decision: :class:`Selector` turns batches of decoded frames into kept frames.

For each batch (see docs/edge-selector.md):

1. resize to the model's input size once; :func:`curator.quality.measure` on that, and the
   quality gates (:class:`~edge_selector.scoring.QualityGates`) drop black, over-exposed and
   blurred frames before inference;
2. one onnxruntime call for the rest (:class:`curator.inference.OnnxModel`);
3. novelty against the recently kept embeddings of the same model version
   (:class:`~edge_selector.novelty.RecentEmbeddings`), uncertainty from the logits, the value
   (:class:`~edge_selector.scoring.ValueModel`); a near-copy of a recently kept frame is dropped;
4. in frame order: the streaming budget (:class:`curator.selection.StreamSelector`) decides, a
   kept frame is encoded and written to the :class:`~edge_selector.buffer.FrameBuffer`, and only
   then is the decision committed and the embedding remembered (a frame kept earlier in the
   batch counts for the novelty of the later ones).

Every frame ends in exactly one of ``kept`` or ``dropped.<reason>`` (:data:`DROP_REASONS`).
The budget's state and the position in a file source are saved in the buffer file every
``save_every_s`` seconds and at :meth:`Selector.save`, so a restart carries on where it was.

:meth:`Selector.swap_model` replaces the model between two batches (edge model updates,
:mod:`edge_selector.models`). :meth:`Selector.prepare` runs in another thread, so a batch may
have been prepared for the old model; it records the model it was prepared for
(``PreparedBatch.model_sha256``) and :meth:`Selector.decide` prepares such a batch again for
the current one, so no frame is lost or run through the wrong input size.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from curator.data.video import VideoFrame
from curator.errors import InvalidInputError
from curator.inference import OnnxModel
from curator.inference.preprocess import LUMA_WEIGHTS, normalize, resize
from curator.quality import measure_luma
from curator.selection import StreamSelector
from curator.uncertainty import softmax
from edge_selector.buffer import FrameBuffer
from edge_selector.buffer_frames import KeptFrame
from edge_selector.encode import encode_image
from edge_selector.novelty import RecentEmbeddings
from edge_selector.scoring import GATE_REASONS, QualityGates, ValueModel

__all__ = ["DROP_REASONS", "PreparedBatch", "SelectionPolicy", "Selector"]

log = logging.getLogger(__name__)

DROP_REASONS = (
    *GATE_REASONS,
    "near_duplicate",
    "below_threshold",
    "no_credit",
    "hourly_cap",
    "low_value",
    "disk_full",
    "too_large",
    "nonfinite_output",
)
"""Why a frame was not kept: a quality gate, redundancy, the budget, or the buffer."""

STATE_NAME = "selector"


@dataclass(frozen=True)
class PreparedBatch:
    """A batch ready for inference (:meth:`Selector.prepare`).

    Attributes:
        frames: the batch's frames past the resume position.
        inputs: ``(P, C, H, W)`` model input of the frames that passed the gates, or None.
        passing: indices into ``frames`` of those frames.
        qualities: their quality measures, in the same order.
        gated: the reasons of the frames the gates dropped.
        model_sha256: the model the input was made for (its size and normalisation); empty
            when unknown, which :meth:`Selector.decide` trusts.
    """

    frames: list[VideoFrame]
    inputs: np.ndarray | None
    passing: list[int]
    qualities: list[dict[str, float]]
    gated: list[str]
    model_sha256: str = ""


@dataclass(frozen=True)
class SelectionPolicy:
    """What the selector keeps and how it stores it.

    Attributes:
        keep_ratio: fraction of the frames that pass the quality gates to keep, in ``(0, 1]``.
        max_per_hour: hard cap on frames kept per hour; None for none.
        window: frames in the budget's sliding window.
        gates: the quality gates.
        value: how uncertainty and novelty make the value.
        novelty_capacity: recently kept embeddings novelty is measured against.
        jpeg_quality: JPEG quality of stored frames (1-95).
        max_side: downscale stored frames so their longer side is at most this; None keeps
            the decoded size.
    """

    keep_ratio: float = 0.1
    max_per_hour: int | None = None
    window: int = 1000
    gates: QualityGates = field(default_factory=QualityGates)
    value: ValueModel = field(default_factory=ValueModel)
    novelty_capacity: int = 50_000
    jpeg_quality: int = 85
    max_side: int | None = None


class Selector:
    """Decide frame by frame what to keep, writing the kept ones to ``buffer``.

    Args:
        model: the contract-checked model.
        buffer: where kept frames go.
        policy: what to keep.
        source: a name for the source; with ``resumable`` the saved position is only used for
            the same name.
        resumable: a finite source (file, folder) that restarts from its first frame, so frames
            up to the saved position are skipped after a restart.
        clock: monotonic seconds, for the hourly cap and state saves.
        wallclock: aware UTC now, for ``captured_at`` of live sources.
        save_every_s: seconds between state saves.

    Not thread-safe: one capture loop calls :meth:`process`. ``counts`` may be read from other
    threads (reads of a Counter are atomic enough for metrics).
    """

    def __init__(
        self,
        model: OnnxModel,
        buffer: FrameBuffer,
        policy: SelectionPolicy | None = None,
        *,
        source: str = "",
        resumable: bool = False,
        clock: Callable[[], float] = time.monotonic,
        wallclock: Callable[[], datetime] | None = None,
        save_every_s: float = 5.0,
    ) -> None:
        self.model, self.buffer = model, buffer
        self.policy = policy or SelectionPolicy()
        self.source, self.resumable = source, resumable
        self._clock = clock
        self._wallclock = wallclock or (lambda: datetime.now(UTC))
        self._save_every_s = save_every_s
        self.counts: Counter[str] = Counter()
        self.started_at = self._wallclock()
        self.recent = self._recent_for(model)
        self.resume_after = -1
        self.stream = self._restore()
        self._last_save = clock()
        self._position = self.resume_after

    def _recent_for(self, model: OnnxModel) -> RecentEmbeddings:
        """A novelty set for ``model``, seeded from the buffered frames of its version."""
        recent = RecentEmbeddings(self.policy.novelty_capacity)
        recent.use(model.model_version)
        seed = self.buffer.recent_embeddings(model.model_version, self.policy.novelty_capacity)
        if seed.size and seed.shape[1] == model.embedding_dim:
            recent.add(seed)
        return recent

    def swap_model(self, model: OnnxModel) -> None:
        """Use ``model`` from the next :meth:`decide` on (call it between batches).

        Novelty restarts in the new embedding space: a new recent set of ``model``'s version,
        seeded from buffered frames of that version. The streaming budget and the source
        position carry on. Batches prepared for the old model are prepared again by
        :meth:`decide`.
        """
        old = self.model.model_version
        self.model = model
        self.recent = self._recent_for(model)
        log.info(
            "model swapped",
            extra={"old_version": old, "model_version": model.model_version,
                   "embedding_dim": model.embedding_dim, "seeded": len(self.recent)},
        )  # fmt: skip

    def _new_stream(self) -> StreamSelector:
        p = self.policy
        return StreamSelector(
            p.keep_ratio, window=p.window, max_per_hour=p.max_per_hour, clock=self._clock
        )

    def _restore(self) -> StreamSelector:
        state = self.buffer.load_state(STATE_NAME)
        if not state:
            return self._new_stream()
        try:
            stream = StreamSelector.from_dict(state["stream"], clock=self._clock)
        except (InvalidInputError, KeyError, TypeError) as exc:
            log.warning("saved selector state unusable, starting afresh", extra={"error": str(exc)})
            return self._new_stream()
        if self._changed(stream):
            stream = self._new_stream()  # the operator changed the budget: start over
        if self.resumable and state.get("source") == self.source:
            self.resume_after = int(state.get("position", -1))
        return stream

    def _changed(self, stream: StreamSelector) -> bool:
        """Whether the saved budget was made with other settings than the policy's."""
        p, cap = self.policy, stream.cap
        return (
            stream.budget.keep_ratio != p.keep_ratio
            or stream.budget.window != p.window
            or (cap.max_kept if cap is not None else None) != p.max_per_hour
        )

    def save(self) -> bool:
        """Save the budget's state and the source position now; False on a full disk."""
        state = {
            "stream": self.stream.to_dict(),
            "source": self.source,
            "position": self._position,
            "model_version": self.model.model_version,
        }
        self._last_save = self._clock()
        return self.buffer.save_state(STATE_NAME, state)

    def prepare(self, frames: Sequence[VideoFrame]) -> PreparedBatch | None:
        """Resize, measure and gate a batch, and build the model input; changes no state.

        Safe to call from another thread than :meth:`decide` (the decode thread does), so this
        numpy work overlaps inference. Frames at or before the resume position are left out;
        None when none is left.
        """
        frames = [f for f in frames if f.index > self.resume_after]
        return self._prepared(frames) if frames else None

    def _prepared(self, frames: list[VideoFrame]) -> PreparedBatch:
        model = self.model  # one read: swap_model may run in the capture thread meanwhile
        meta = model.metadata
        height, width = meta.input_size
        pixels = np.empty((len(frames), height, width, 3), np.float32)
        for i, frame in enumerate(frames):  # one at a time: the float copies stay small
            pixels[i] = resize(frame.image[None], meta.input_size, meta.resize)[0]
        greys = pixels @ LUMA_WEIGHTS
        passing: list[int] = []
        qualities: list[dict[str, float]] = []
        gated: list[str] = []
        for i, grey in enumerate(greys):
            quality = measure_luma(grey)
            reason = self.policy.gates.reason(quality)
            if reason is None:
                passing.append(i)
                qualities.append(quality.as_dict())
            else:
                gated.append(reason)
        inputs = normalize(pixels[passing], meta) if passing else None
        return PreparedBatch(frames, inputs, passing, qualities, gated, model.sha256)

    def process(self, frames: Sequence[VideoFrame], started: datetime | None = None) -> None:
        """:meth:`prepare` then :meth:`decide`, in this thread."""
        prepared = self.prepare(frames)
        if prepared is not None:
            self.decide(prepared, started)

    def decide(self, batch: PreparedBatch, started: datetime | None = None) -> None:
        """Run the model on a prepared batch and decide about each frame, in order.

        Args:
            batch: from :meth:`prepare`.
            started: the aware time of the source's first frame, so a file's frames get
                ``started + timestamp`` as ``captured_at``; None stamps the wall clock.
        """
        if batch.model_sha256 and batch.model_sha256 != self.model.sha256:
            batch = self._prepared(batch.frames)  # made for a model swapped out since
        for reason in batch.gated:
            self.counts[f"dropped.{reason}"] += 1
        self.counts["frames.seen"] += len(batch.frames)
        if batch.inputs is not None:
            self._decide(batch.frames, batch.inputs, batch.passing, batch.qualities, started)
        self._position = batch.frames[-1].index
        if self._clock() - self._last_save >= self._save_every_s:
            self.save()

    def _decide(
        self,
        frames: Sequence[VideoFrame],
        inputs: np.ndarray,
        passing: list[int],
        qualities: list[dict[str, float]],
        started: datetime | None,
    ) -> None:
        prediction = self.model.run(inputs)
        embeddings, logits = prediction.embeddings, prediction.logits
        finite = np.isfinite(embeddings).all(axis=1) & (np.linalg.norm(embeddings, axis=1) > 0)
        if logits is not None:
            finite &= np.isfinite(logits).all(axis=1)
        if not finite.all():  # a model that breaks its contract at run time: skip, count, say
            bad = int((~finite).sum())
            self.counts["dropped.nonfinite_output"] += bad
            log.warning("model output NaN, inf or a zero embedding", extra={"frames": bad})
            keep = np.flatnonzero(finite)
            passing = [passing[k] for k in keep]
            qualities = [qualities[k] for k in keep]
            embeddings = embeddings[keep]
            logits = None if logits is None else logits[keep]
            if not passing:
                return
        probs = None if logits is None else softmax(logits).astype(np.float32)
        scores = self.policy.value.scores(self.recent.similarity(embeddings), probs)
        norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
        unit = embeddings / np.maximum(norms, 1e-12)
        kept_here: list[int] = []
        for j, i in enumerate(passing):
            similarity = float(scores.similarity[j])
            if kept_here:  # frames kept earlier in this batch count too
                similarity = max(similarity, float((unit[kept_here] @ unit[j]).max()))
                if similarity > scores.similarity[j]:
                    scores = self._rescored(scores, j, similarity, probs)
            value = float(scores.value[j])
            decision = self.stream.decide(value)
            if self.policy.value.is_duplicate(similarity):
                self.stream.commit(decision, kept=False)
                self.counts["dropped.near_duplicate"] += 1
                continue
            if not decision.keep:
                self.stream.commit(decision, kept=False)
                self.counts[f"dropped.{decision.reason}"] += 1
                continue
            kept = self._keep(frames[i], embeddings[j], scores.named(j, self._measure), value,
                              decision.reason, decision.threshold, probs, j, qualities[j],
                              started)  # fmt: skip
            self.stream.commit(decision, kept=kept)
            if kept:
                kept_here.append(j)
                self.recent.add(embeddings[j : j + 1])

    @property
    def _measure(self) -> str:
        return self.policy.value.uncertainty

    def _rescored(self, scores: Any, j: int, similarity: float, probs: Any) -> Any:
        one = self.policy.value.scores(
            np.array([similarity], np.float32), None if probs is None else probs[j : j + 1]
        )
        for name in ("novelty", "similarity", "value"):
            getattr(scores, name)[j] = getattr(one, name)[0]
        return scores

    def _keep(
        self,
        frame: VideoFrame,
        embedding: np.ndarray,
        named: dict[str, float],
        value: float,
        reason: str,
        threshold: float,
        probs: Any,
        j: int,
        quality: dict[str, float],
        started: datetime | None,
    ) -> bool:
        p = self.policy
        encoded = encode_image(frame.image, quality=p.jpeg_quality, max_side=p.max_side)
        captured = (
            self._wallclock() if started is None else started + timedelta(seconds=frame.timestamp)
        )
        kept = KeptFrame(
            image=encoded.data,
            width=encoded.width,
            height=encoded.height,
            embedding=embedding,
            model_version=self.model.model_version,
            scores=named,
            value=value,
            captured_at=captured,
            keep_reason=reason,
            quality=quality,
            predicted_class=None if probs is None else int(np.argmax(probs[j])),
            class_probabilities=None if probs is None else probs[j],
            keep_threshold=threshold if np.isfinite(threshold) else None,
        )
        try:
            outcome = self.buffer.add(kept)
        except InvalidInputError as exc:  # FrameTooLargeError included
            log.warning("frame not buffered", extra={"error": str(exc)})
            self.counts["dropped.too_large"] += 1
            return False
        self.counts["evicted"] += len(outcome.evicted)
        if outcome.device_seq is None:
            self.counts[f"dropped.{outcome.dropped}"] += 1
            return False
        self.counts["frames.kept"] += 1
        if log.isEnabledFor(logging.DEBUG):  # the crash test reads these lines
            frame_id = hashlib.sha256(kept.image).hexdigest()
            extra = {"device_seq": outcome.device_seq, "frame_id": frame_id, "value": value}
            log.debug("frame kept", extra=extra)
        return True
