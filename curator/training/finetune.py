"""Supervised fine-tuning on labeled frames, and its evaluation on a held-out labeled set.

:func:`finetune` trains a network from :func:`~curator.training.backbones.build_embedder` (fresh,
or loaded with the current model's weights) with cross-entropy on its logits. It feeds the
network what the edge feeds it: uint8 frames through
:func:`curator.inference.preprocess_frames` with the model's metadata. The run is seeded: the
same seed, weights and frames give the same weights and losses.

:func:`evaluate` runs a network on held-out frames and scores its predictions with
:func:`classification_metrics`, a pure numpy function that an ONNX model's predictions (the
current model, at a promotion gate) can be scored with too. The metrics (:class:`Evaluation`):

- ``accuracy``: the fraction of frames whose arg-max class is their label;
- ``per_class_accuracy``: per class name, that fraction among the frames of that class (its
  recall), ``None`` for a class with no held-out frame;
- ``macro_f1``: the unweighted mean F1 over the classes present in the labels or predictions
  (scikit-learn's ``f1_score(average="macro")``, a 0/0 precision or recall counting as 0);
- ``n``: the number of held-out frames;
- ``loss``: the mean cross-entropy of the logits (``None`` when only classes were given).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from curator._optional import require
from curator.errors import InvalidInputError
from curator.inference.contract import ModelMetadata
from curator.inference.preprocess import preprocess_frames

if TYPE_CHECKING:
    import torch

__all__ = [
    "Evaluation",
    "FineTuneResult",
    "classification_metrics",
    "evaluate",
    "finetune",
    "logits_of",
    "outputs_of",
]

_EVAL_BATCH = 256


@dataclass(frozen=True)
class Evaluation:
    """A classifier's scores on a labeled set (see the module docstring for each metric).

    Attributes:
        accuracy: fraction correct, in [0, 1].
        per_class_accuracy: class name to its recall, ``None`` when the class has no frame.
        macro_f1: mean F1 over the classes present, in [0, 1].
        n: number of frames scored.
        loss: mean cross-entropy, or ``None`` when computed from classes alone.
    """

    accuracy: float
    per_class_accuracy: dict[str, float | None]
    macro_f1: float
    n: int
    loss: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready copy: ``accuracy``, ``per_class_accuracy``, ``macro_f1``, ``n``,
        ``loss``."""
        return {
            "accuracy": self.accuracy,
            "per_class_accuracy": dict(self.per_class_accuracy),
            "macro_f1": self.macro_f1,
            "n": self.n,
            "loss": self.loss,
        }


@dataclass(frozen=True)
class FineTuneResult:
    """What :func:`finetune` returns.

    Attributes:
        module: the trained network (in eval mode), the same object that was passed in.
        epoch_losses: mean training cross-entropy of each epoch, first epoch first.
        metrics: the scores on the held-out set, ``None`` when none was given.
    """

    module: torch.nn.Module
    epoch_losses: tuple[float, ...]
    metrics: Evaluation | None


def check_labels(labels: Any, n: int, num_classes: int, name: str = "labels") -> np.ndarray:
    """``labels`` as an ``(n,)`` int64 array of class indices in ``[0, num_classes)``.

    Raises:
        InvalidInputError: not integers, another length, or an index out of range.
    """
    arr = np.asarray(labels)
    if arr.ndim != 1 or len(arr) != n:
        raise InvalidInputError(f"{name} must have shape ({n},), got {arr.shape}")
    if n and not np.issubdtype(arr.dtype, np.integer):
        raise InvalidInputError(f"{name} must be integer class indices, got dtype {arr.dtype}")
    out = arr.astype(np.int64)
    if n and (out.min() < 0 or out.max() >= num_classes):
        raise InvalidInputError(
            f"{name} must be class indices in [0, {num_classes}), "
            f"got values in [{out.min()}, {out.max()}]"
        )
    return out


def classification_metrics(
    labels: Any,
    logits_or_classes: Any,
    class_names: Sequence[str],
) -> Evaluation:
    """Score predictions against labels.

    Args:
        labels: ``(N,)`` integer class indices in ``[0, K)``.
        logits_or_classes: ``(N, K)`` logits (the loss is computed too) or ``(N,)`` predicted
            class indices.
        class_names: the ``K`` class names, in logit order.

    Returns:
        The :class:`Evaluation`.

    Raises:
        InvalidInputError: no frames, mismatched shapes, indices out of range, or non-finite
            logits.
    """
    k = len(class_names)
    pred = np.asarray(logits_or_classes)
    n = len(pred) if pred.ndim >= 1 else -1
    if n <= 0:
        raise InvalidInputError(f"need at least one prediction, got shape {pred.shape}")
    y = check_labels(labels, n, k)
    loss: float | None = None
    if pred.ndim == 2:
        if pred.shape[1] != k:
            raise InvalidInputError(f"logits must have shape ({n}, {k}), got {pred.shape}")
        logits = pred.astype(np.float64)
        if not np.isfinite(logits).all():
            raise InvalidInputError("logits hold NaN or inf values")
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        loss = float(-log_probs[np.arange(n), y].mean())
        predicted = logits.argmax(axis=1)
    else:
        predicted = check_labels(pred, n, k, "predicted classes")
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (y, predicted), 1)
    true_pos = np.diag(confusion).astype(np.float64)
    support, predicted_count = confusion.sum(axis=1), confusion.sum(axis=0)
    per_class = {
        name: (float(true_pos[i] / support[i]) if support[i] else None)
        for i, name in enumerate(class_names)
    }
    denominator = support + predicted_count
    f1 = np.divide(2 * true_pos, denominator, out=np.zeros(k), where=denominator > 0)
    present = denominator > 0
    return Evaluation(
        accuracy=float(true_pos.sum() / n),
        per_class_accuracy=per_class,
        macro_f1=float(f1[present].mean()),
        n=n,
        loss=loss,
    )


def _check_epochs_batch(epochs: Any, batch_size: Any, learning_rate: Any) -> None:
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise InvalidInputError(f"epochs must be a non-negative integer, got {epochs!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise InvalidInputError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not isinstance(learning_rate, int | float) or not learning_rate > 0:
        raise InvalidInputError(f"learning_rate must be a positive number, got {learning_rate!r}")


def epochs_for_samples(n: int, *, samples: int, min_epochs: int) -> int:
    """Passes over ``n`` frames that make up at least ``samples`` training samples, and at
    least ``min_epochs``: a small labeled set gets more passes, so a model trained on 500
    labels sees as many samples as one trained on 5,000.

    Raises:
        InvalidInputError: ``n`` not positive, or ``samples`` or ``min_epochs`` negative.
    """
    for name, value, low in (("n", n, 1), ("samples", samples, 0), ("min_epochs", min_epochs, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise InvalidInputError(f"{name} must be an integer >= {low}, got {value!r}")
    return max(min_epochs, math.ceil(samples / n))


def check_seed(seed: Any) -> int:
    """``seed`` if it is a non-negative integer.

    Raises:
        InvalidInputError: anything else.
    """
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise InvalidInputError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def outputs_of(
    module: torch.nn.Module, inputs: npt.NDArray[np.float32]
) -> tuple[np.ndarray, np.ndarray]:
    """Run ``module`` in eval mode on preprocessed ``(N, C, H, W)`` inputs, in chunks.

    Returns:
        ``(embedding, logits)``: ``(N, D)`` and ``(N, K)`` float32. The module's training mode
        is restored afterwards.
    """
    torch = require("torch", extra="train")
    was_training = module.training
    module.eval()
    embeddings: list[np.ndarray] = []
    logits: list[np.ndarray] = []
    try:
        with torch.inference_mode():
            for i in range(0, len(inputs), _EVAL_BATCH):
                embedding, logit = module(torch.from_numpy(inputs[i : i + _EVAL_BATCH]))
                embeddings.append(embedding.numpy())
                logits.append(logit.numpy())
    finally:
        module.train(was_training)
    if not logits:
        return np.zeros((0, 0), np.float32), np.zeros((0, 0), np.float32)
    return np.concatenate(embeddings), np.concatenate(logits)


def logits_of(module: torch.nn.Module, inputs: npt.NDArray[np.float32]) -> np.ndarray:
    """Run ``module`` in eval mode on preprocessed ``(N, C, H, W)`` inputs; ``(N, K)`` logits.

    The module's training mode is restored afterwards.
    """
    return outputs_of(module, inputs)[1]


def evaluate(
    module: torch.nn.Module, frames: Any, labels: Any, metadata: ModelMetadata
) -> Evaluation:
    """Score ``module`` on labeled uint8 frames, preprocessed as the edge does.

    Args:
        module: a network whose ``forward(x)`` returns ``(embedding, logits)``.
        frames: ``(N, H, W, C)`` uint8 frames (or a list, see
            :func:`curator.inference.preprocess_frames`).
        labels: ``(N,)`` class indices into ``metadata.class_names``.
        metadata: the model's metadata: preprocessing and class names.

    Returns:
        The :class:`Evaluation`, its ``loss`` included.

    Raises:
        InvalidInputError: bad frames or labels.
    """
    inputs = preprocess_frames(frames, metadata)
    return classification_metrics(labels, logits_of(module, inputs), metadata.class_names)


def finetune(
    module: torch.nn.Module,
    frames: Any,
    labels: Any,
    metadata: ModelMetadata,
    *,
    epochs: int = 5,
    batch_size: int = 64,
    learning_rate: float = 2e-3,
    weight_decay: float = 1e-4,
    seed: int = 0,
    held_out: tuple[Any, Any] | None = None,
) -> FineTuneResult:
    """Train ``module`` with cross-entropy on labeled uint8 frames (Adam, shuffled mini-batches,
    the step size annealed from ``learning_rate`` to zero along a cosine over all the steps, so
    that the last weights are not a noisy point of a constant-rate walk).

    Args:
        module: a network whose ``forward(x)`` returns ``(embedding, logits)`` with
            ``len(metadata.class_names)`` logits, e.g. from ``build_embedder`` with the
            current model's weights loaded. It is trained in place.
        frames: ``(N, H, W, C)`` uint8 frames, preprocessed with
            :func:`curator.inference.preprocess_frames` and ``metadata``.
        labels: ``(N,)`` class indices.
        metadata: the model's metadata: preprocessing and class names.
        epochs: passes over the frames (0 only evaluates).
        batch_size: frames per step; a last batch of one frame is dropped (BatchNorm).
        learning_rate: Adam's initial step size.
        weight_decay: Adam's L2 penalty.
        seed: seeds the shuffling (torch's global generator is left as it was).
        held_out: ``(frames, labels)`` to score the trained network on.

    Returns:
        The :class:`FineTuneResult`: the module (eval mode), per-epoch losses, held-out
        metrics.

    Raises:
        InvalidInputError: bad frames, labels or hyper-parameters; no frames.
        MissingDependencyError: torch is not installed.
    """
    torch = require("torch", extra="train")
    _check_epochs_batch(epochs, batch_size, learning_rate)
    seed = check_seed(seed)
    inputs = preprocess_frames(frames, metadata)
    if len(inputs) == 0:
        raise InvalidInputError("finetune needs at least one labeled frame, got 0")
    y = torch.from_numpy(check_labels(labels, len(inputs), len(metadata.class_names)))
    x = torch.from_numpy(inputs)
    losses: list[float] = []
    optimizer = torch.optim.Adam(
        module.parameters(), lr=float(learning_rate), weight_decay=float(weight_decay)
    )
    steps = epochs * sum(
        1 for start in range(0, len(x), batch_size) if not (len(x) - start < 2 < len(x))
    )
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(steps, 1))
    generator = torch.Generator().manual_seed(seed)
    module.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        total, count = 0.0, 0
        for start in range(0, len(x), batch_size):
            idx = order[start : start + batch_size]
            if len(idx) < 2 < len(x):
                continue  # BatchNorm cannot train on a batch of one
            _, logits = module(x[idx])
            loss = torch.nn.functional.cross_entropy(logits, y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
        losses.append(total / max(count, 1))
    module.eval()
    metrics = evaluate(module, held_out[0], held_out[1], metadata) if held_out else None
    return FineTuneResult(module=module, epoch_losses=tuple(losses), metrics=metrics)
