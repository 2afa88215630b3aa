"""What a frame is worth: quality gates, then a value combining uncertainty and novelty.

Per frame, in this order:

1. **Quality gates** (:class:`QualityGates`) on :func:`curator.quality.measure` of the frame at
   the model's input size: a frame darker than ``min_brightness`` is ``black``, one with more
   than ``max_overexposed`` of its pixels blown out is ``overexposed``, one whose Laplacian
   variance is below ``min_sharpness`` is ``blurred``. Such frames are dropped before the model
   runs, and counted by reason.
2. **Scores** (:class:`ValueModel`): ``uncertainty`` (the named score of
   :mod:`curator.uncertainty`, in ``[0, 1]``; absent for an embedding-only model) and
   ``novelty`` (``1 - max cosine`` to the recently kept frames, clipped to ``[0, 1]``; see
   :class:`edge_selector.novelty.RecentEmbeddings`).
3. **Redundancy**: a frame whose similarity to a recently kept frame is at least
   ``duplicate_similarity`` is dropped as ``near_duplicate``, whatever its uncertainty.
4. **Value**: ``(w_u * uncertainty + w_n * novelty) / (w_u + w_n)`` with the configured
   strengths (an embedding-only model uses novelty alone), in ``[0, 1]``. The streaming budget
   (:class:`curator.selection.StreamSelector`) then keeps about ``keep_ratio`` of the frames by
   value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from curator.errors import InvalidInputError
from curator.quality import FrameQuality
from curator.uncertainty import SCORES

__all__ = ["GATE_REASONS", "FrameScores", "QualityGates", "ValueModel"]

GATE_REASONS = ("black", "overexposed", "blurred")
"""Why a frame fails the quality gates, in the order they are checked."""

FloatArray = npt.NDArray[np.float32]


def _fraction(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise InvalidInputError(f"{name} must be a number in [0, 1], got {value!r}")
    return float(value)


def _non_negative(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise InvalidInputError(f"{name} must be a number >= 0, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class QualityGates:
    """Thresholds below (or above) which a frame is not worth the model's time.

    Attributes:
        min_brightness: mean luma in ``[0, 1]`` under which a frame is ``black``.
        max_overexposed: fraction of pixels at 250 or more above which it is ``overexposed``.
        min_sharpness: Laplacian variance (grey levels squared, at the model's input size)
            under which it is ``blurred``; 0 turns the gate off.
    """

    min_brightness: float = 0.05
    max_overexposed: float = 0.5
    min_sharpness: float = 15.0

    def __post_init__(self) -> None:
        _fraction(self.min_brightness, "min_brightness")
        _fraction(self.max_overexposed, "max_overexposed")
        _non_negative(self.min_sharpness, "min_sharpness")

    def reason(self, quality: FrameQuality) -> str | None:
        """The first gate ``quality`` fails (one of :data:`GATE_REASONS`), or None."""
        if quality.brightness < self.min_brightness:
            return "black"
        if quality.overexposed > self.max_overexposed:
            return "overexposed"
        if quality.blur < self.min_sharpness:
            return "blurred"
        return None


@dataclass(frozen=True)
class FrameScores:
    """Scores of a batch of frames that passed the gates.

    Attributes:
        novelty: ``(N,)`` in ``[0, 1]``.
        similarity: ``(N,)`` highest cosine to a recently kept frame (``-inf``: none kept).
        uncertainty: ``(N,)`` in ``[0, 1]``, or None for an embedding-only model.
        value: ``(N,)`` in ``[0, 1]``.
    """

    novelty: FloatArray
    similarity: FloatArray
    uncertainty: FloatArray | None
    value: FloatArray

    def named(self, i: int, measure: str) -> dict[str, float]:
        """Frame ``i``'s scores by name, as recorded with a kept frame."""
        named = {"novelty": float(self.novelty[i]), "value": float(self.value[i])}
        if self.uncertainty is not None:
            named[measure] = float(self.uncertainty[i])
        return named


@dataclass(frozen=True)
class ValueModel:
    """How uncertainty and novelty combine into a frame's value.

    Attributes:
        uncertainty: the uncertainty score's name (``entropy``, ``margin``,
            ``least_confidence``).
        uncertainty_weight: strength of uncertainty in the value (>= 0).
        novelty_weight: strength of novelty in the value (>= 0).
        duplicate_similarity: cosine at or above which a frame repeats a recently kept one and
            is dropped as ``near_duplicate``; above 1 turns the check off.
    """

    uncertainty: str = "entropy"
    uncertainty_weight: float = 1.0
    novelty_weight: float = 1.0
    duplicate_similarity: float = 0.98

    def __post_init__(self) -> None:
        if self.uncertainty not in SCORES or self.uncertainty == "bald":
            valid = ", ".join(sorted(set(SCORES) - {"bald"}))
            raise InvalidInputError(
                f"unknown uncertainty score {self.uncertainty!r}; valid: {valid}"
            )
        _non_negative(self.uncertainty_weight, "uncertainty_weight")
        _non_negative(self.novelty_weight, "novelty_weight")
        if self.uncertainty_weight + self.novelty_weight <= 0:
            raise InvalidInputError("uncertainty_weight and novelty_weight cannot both be 0")
        _non_negative(self.duplicate_similarity, "duplicate_similarity")

    def scores(self, similarity: Any, probs: Any | None) -> FrameScores:
        """Scores and value of ``N`` frames.

        Args:
            similarity: ``(N,)`` highest cosine to the recent set (``-inf`` when it is empty).
            probs: ``(N, K)`` class probabilities, or None for an embedding-only model.

        Raises:
            InvalidInputError: malformed probabilities.
        """
        sim = np.asarray(similarity, dtype=np.float32)
        novelty = np.where(np.isneginf(sim), 1.0, np.clip(1.0 - sim, 0.0, 1.0)).astype(np.float32)
        if probs is None or self.uncertainty_weight == 0:
            unc = None if probs is None else SCORES[self.uncertainty](probs).astype(np.float32)
            return FrameScores(novelty, sim, unc, novelty.copy())
        unc = SCORES[self.uncertainty](probs).astype(np.float32)
        wu, wn = self.uncertainty_weight, self.novelty_weight
        value = ((wu * unc + wn * novelty) / (wu + wn)).astype(np.float32)
        return FrameScores(novelty, sim, unc, value)

    def is_duplicate(self, similarity: float) -> bool:
        """Whether a frame this similar to a recently kept one is redundant."""
        return similarity >= self.duplicate_similarity
