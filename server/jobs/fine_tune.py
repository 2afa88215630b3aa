"""The ``fine_tune`` job runner: a snapshot's labeled frames in, a gated model version out.

:func:`fine_tune_job` (``server.jobs.fine_tune:fine_tune_job``, the default runner):

1. **idempotent**: a version already registered for the snapshot (a crashed run's) is returned;
2. **data**: the snapshot's labels (:meth:`JobContext.labels`), each frame's image read from the
   blob store and decoded with PIL to uint8 (RGB, or gray when the model is gray), resized to
   the model's input size;
3. **parent**: the latest promoted model. Its ONNX metadata gives the class names, input size and
   channels; its weights come from the state blob its job recorded
   (:meth:`JobContext.weights_of`, the ``jobs.weights_blob`` of its snapshot's job, written
   before the version was registered). Without a promoted model: the labels' sorted
   class names and ``params["input_size"]`` (default 64), a fresh ``params["arch"]``;
4. **held-out set**: the frames whose ``sha256(frame_id)`` falls in the lowest fifth
   (:func:`is_held_out`), so every run of a snapshot splits alike and the candidate and the
   current model are scored on the same frames;
5. **train** with :func:`curator.training.train_model`, store the new state blob and record its
   key on the job's row (:meth:`JobContext.record_weights`) before registering, so a worker
   dying between registering and finishing leaves the weights findable and the re-run (step 1)
   trains nothing; and
6. **gate**: register the ONNX file for the snapshot and promote it unless it is worse than the
   current model *on this held-out set* by more than ``params["gate_margin"]`` (default
   :data:`server.registry.DEFAULT_MARGIN`), through :func:`server.registry.register_and_gate`
   with ``measured_current``: the current model's score on the candidate's held-out set, not
   its stored metrics (measured on its own snapshot's held-out set).

Params (all optional): ``epochs`` (5; at least), ``min_samples`` (0: the passes make up at
least this many training samples, :func:`curator.training.epochs_for_samples`; new jobs record
the server's ``train_epochs`` and ``train_min_samples``), ``arch`` (``"tiny_cnn"``),
``input_size`` (64), ``channels`` (``"rgb"`` or ``"gray"``, first model only), ``batch_size`` (64),
``learning_rate`` (2e-3), ``seed`` (0), ``gate_margin``.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from curator.errors import DatasetError, InvalidInputError
from curator.inference import OnnxModel
from curator.training import classification_metrics, epochs_for_samples, train_model
from curator.wire import ModelInfo
from server.jobs.runners import JobContext, JobResult
from server.jobs.trigger import SnapshotLabel
from server.registry import DEFAULT_MARGIN, register_and_gate

__all__ = ["HELD_OUT_BUCKETS", "fine_tune_job", "is_held_out", "model_version_for"]

HELD_OUT_BUCKETS = 5
"""One frame in this many is held out (20%), chosen by the hash of its frame id."""


def model_version_for(snapshot_key: str) -> str:
    """The model version a snapshot yields: ``ft-<first 12 hex of the snapshot key>``."""
    return f"ft-{snapshot_key[:12]}"


def is_held_out(frame_id: str) -> bool:
    """Whether ``frame_id`` is in the held-out set: ``sha256(frame_id)`` mod 5 is 0."""
    digest = hashlib.sha256(frame_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") % HELD_OUT_BUCKETS == 0


@dataclass(frozen=True)
class _Parent:
    """The latest promoted model: its version, ONNX model and state blob (None if unknown)."""

    info: ModelInfo
    model: OnnxModel
    state: bytes | None


def _find_parent(ctx: JobContext) -> _Parent | None:
    current = ctx.registry.latest_promoted()
    if current is None:
        return None
    _, onnx = ctx.registry.read_file(current.model_version)
    key = ctx.weights_of(current.model_version)
    state = ctx.registry.blobs.get(key) if key and ctx.registry.blobs.exists(key) else None
    return _Parent(current, OnnxModel(onnx, intra_op_threads=1), state)


def _decode(data: bytes, size: tuple[int, int], gray: bool, frame_id: str) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as opened:
            image = opened.convert("L" if gray else "RGB")
        if image.size != (size[1], size[0]):
            image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
        pixels = np.asarray(image, dtype=np.uint8)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"frame {frame_id!r}: cannot decode its image ({exc})") from exc
    return pixels[..., None] if gray else pixels


def _load_frames(
    ctx: JobContext, labels: Sequence[SnapshotLabel], size: tuple[int, int], gray: bool
) -> np.ndarray:
    rows = ctx.catalog.get_many(lab.frame_id for lab in labels)
    frames = []
    for lab in labels:
        row = rows.get(lab.frame_id)
        if row is None or row.blob_key is None:
            raise DatasetError(f"labeled frame {lab.frame_id!r} has no stored image")
        frames.append(_decode(ctx.registry.blobs.get(row.blob_key), size, gray, lab.frame_id))
    channels = 1 if gray else 3
    return np.stack(frames) if frames else np.zeros((0, *size, channels), np.uint8)


def _input_size(value: Any) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value, value
    if (
        isinstance(value, list | tuple)
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    ):
        return int(value[0]), int(value[1])
    raise InvalidInputError(f"params.input_size must be a positive int or [H, W], got {value!r}")


def _flat_metrics(evaluation: dict[str, Any]) -> dict[str, float]:
    """The registry's flat metrics from :meth:`Evaluation.as_dict` (per-class scores dropped:
    class names need not be valid metric names)."""
    out: dict[str, float] = {
        k: float(evaluation[k]) for k in ("accuracy", "macro_f1") if k in evaluation
    }
    out["n_held_out"] = float(evaluation["n"])
    if evaluation.get("loss") is not None:
        out["loss"] = float(evaluation["loss"])
    return out


def fine_tune_job(ctx: JobContext) -> JobResult:
    """Train, register and gate the model of ``ctx``'s snapshot (see the module docstring).

    Returns:
        The version (``ft-<snapshot key[:12]>``), its held-out metrics, whether the gate promoted
        it, and details: ``state_blob`` (the blob key of its weights, the next run's parent),
        ``parent_version``, ``current_metrics`` (the current model on the same held-out set),
        ``gate_reason``, ``n_train``, ``n_held_out``, ``skipped_labels``, ``class_names``.

    Raises:
        DatasetError: a labeled frame without a readable image.
        InvalidInputError: bad params, or too few frames to train and hold out.
    """
    existing = ctx.existing_model()
    if existing is not None:  # a crashed run registered it already
        reused: dict[str, Any] = {"reused": True}
        state_blob = ctx.weights_of(existing.model_version)
        if state_blob is not None:  # keep the weights findable for the next run
            reused["state_blob"] = state_blob
        return JobResult(existing.model_version, existing.metrics, existing.promoted, reused)
    params = ctx.params
    parent = _find_parent(ctx)
    labels = ctx.labels()
    if parent is not None:
        meta = parent.model.metadata
        names, size, gray = meta.class_names, meta.input_size, meta.channels == "gray"
    else:
        names = tuple(sorted({lab.class_name for lab in labels}))
        size = _input_size(params.get("input_size", 64))
        channels = params.get("channels", "rgb")
        if channels not in ("rgb", "gray"):
            raise InvalidInputError(f"params.channels must be 'rgb' or 'gray', got {channels!r}")
        gray = channels == "gray"
    index = {name: i for i, name in enumerate(names)}
    usable = [lab for lab in labels if lab.class_name in index]
    held = np.array([is_held_out(lab.frame_id) for lab in usable], dtype=bool)
    frames = _load_frames(ctx, usable, size, gray)
    y = np.array([index[lab.class_name] for lab in usable], dtype=np.int64)
    held_frames, held_y = frames[held], y[held]
    if len(names) < 2 or len(held_y) == 0:
        raise InvalidInputError(
            f"snapshot {ctx.snapshot_key[:12]}: need 2+ classes and a held-out frame, got "
            f"classes {list(names)} and {len(held_y)} held-out of {len(usable)} usable labels"
        )
    epochs = epochs_for_samples(
        max(int((~held).sum()), 1),
        samples=int(params.get("min_samples", 0)),
        min_epochs=int(params.get("epochs", 5)),
    )
    trained = train_model(
        frames[~held],
        y[~held],
        names,
        model_version=model_version_for(ctx.snapshot_key),
        held_out=(held_frames, held_y),
        parent=None if parent is None else parent.state,
        epochs=epochs,
        arch=str(params.get("arch", "tiny_cnn")),
        input_size=size,
        batch_size=int(params.get("batch_size", 64)),
        learning_rate=float(params.get("learning_rate", 2e-3)),
        seed=int(params.get("seed", 0)),
    )
    metrics = _flat_metrics(trained.metrics.as_dict())
    current_metrics: dict[str, float] | None = None
    if parent is not None:
        logits = parent.model.predict(held_frames).logits
        if logits is not None:
            current_metrics = _flat_metrics(classification_metrics(held_y, logits, names).as_dict())
    state_blob = ctx.registry.blobs.put(trained.state_dict, "pt")
    ctx.record_weights(state_blob)  # False: the lease was lost; this run's result is discarded
    parent_version = None if parent is None or parent.state is None else parent.info.model_version
    measured = None
    if parent is not None and current_metrics is not None:
        measured = (parent.info.model_version, current_metrics)
    gated = register_and_gate(
        ctx.registry,
        trained.onnx,
        snapshot_key=ctx.snapshot_key,
        parent_version=parent_version,
        metrics=metrics,
        margin=float(params.get("gate_margin", DEFAULT_MARGIN)),
        measured_current=measured,
    )
    info = gated.info
    details: dict[str, Any] = {
        "state_blob": state_blob,
        "epochs": epochs,
        "parent_version": parent_version,
        "current_version": None if parent is None else parent.info.model_version,
        "current_metrics": current_metrics,
        "gate_reason": None if gated.decision is None else gated.decision.reason,
        "n_train": trained.n_train,
        "n_held_out": len(held_y),
        "skipped_labels": len(labels) - len(usable),
        "class_names": list(names),
    }
    return JobResult(info.model_version, info.metrics, info.promoted, details)
