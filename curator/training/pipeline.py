"""The training pipeline: labeled frames (and the current model) in, a contract ONNX model out.

:func:`train_model` runs, in order:

1. **split** the labeled frames into a training set and a held-out set (stratified by class,
   seeded), unless a held-out set is given (a promotion gate compares models on one set);
2. **start** from the parent's weights (the :attr:`TrainedModel.state_dict` blob saved next to
   its ONNX file: an ONNX graph cannot be trained) or from a fresh ``build_embedder``;
3. **pretrain** with SimCLR on unlabeled frames when asked (:mod:`curator.training.pretrain`);
4. **fine-tune** on the training set with cross-entropy (:mod:`curator.training.finetune`);
5. **evaluate** on the held-out set;
6. **export** with :func:`~curator.training.export.export_onnx`, which proves the ONNX outputs
   match torch's (1e-4) through :class:`curator.inference.OnnxModel`.

Preprocessing is the model's: a child keeps its parent's (input size, channels, mean, std), and a
first model measures mean and std on its labeled frames. Frames go through
:func:`curator.inference.preprocess_frames` exactly as on the edge.

The state blob is ``torch.save`` of a dict holding the format tag, the architecture, the
``curator.*`` metadata props and the ``state_dict``; it loads with ``weights_only=True``
(:func:`load_state`).
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from curator._optional import require
from curator.errors import InvalidInputError
from curator.inference.contract import ModelMetadata
from curator.training.backbones import build_embedder
from curator.training.export import export_onnx
from curator.training.finetune import Evaluation, check_labels, check_seed, evaluate, finetune
from curator.training.pretrain import pretrain_simclr

if TYPE_CHECKING:
    import torch

__all__ = ["STATE_FORMAT", "TrainedModel", "load_state", "save_state", "train_model"]

STATE_FORMAT = "curator.state/1"
"""The format tag inside a state blob."""

_STATS_FRAMES = 1024


@dataclass(frozen=True)
class TrainedModel:
    """A trained model: what the registry stores and the devices run.

    Attributes:
        onnx: the contract-satisfying ONNX bytes (served to devices).
        state_dict: the trainable weights (:func:`save_state`), the parent of the next run.
        metadata: the model's ``curator.*`` metadata (version, classes, preprocessing).
        metrics: scores on the held-out set.
        train_losses: mean cross-entropy per fine-tuning epoch.
        pretrain_losses: mean NT-Xent loss per SimCLR epoch (empty when not pretrained).
        n_train: labeled frames trained on.
        n_unlabeled: unlabeled frames pretrained on.
        parent_sha256: sha256 of the parent's state blob, ``None`` for a fresh start.
    """

    onnx: bytes
    state_dict: bytes
    metadata: ModelMetadata
    metrics: Evaluation
    train_losses: tuple[float, ...]
    pretrain_losses: tuple[float, ...]
    n_train: int
    n_unlabeled: int
    parent_sha256: str | None

    @property
    def sha256(self) -> str:
        """Hex sha256 of :attr:`onnx`, what devices verify after download."""
        return hashlib.sha256(self.onnx).hexdigest()


def save_state(module: torch.nn.Module, metadata: ModelMetadata) -> bytes:
    """Serialise ``module``'s weights with its architecture and metadata (see the module doc)."""
    torch = require("torch", extra="train")
    blob = {
        "format": STATE_FORMAT,
        "arch": str(getattr(module, "arch", "")),
        "metadata": metadata.to_props(),
        "state_dict": {k: v.detach().cpu() for k, v in module.state_dict().items()},
    }
    buffer = io.BytesIO()
    torch.save(blob, buffer)
    return buffer.getvalue()


def load_state(data: bytes) -> tuple[torch.nn.Module, ModelMetadata]:
    """Rebuild the network saved by :func:`save_state`.

    Returns:
        ``(module, metadata)``: the network in eval mode with the saved weights, and the
        metadata it was saved with.

    Raises:
        InvalidInputError: the bytes are not a curator state blob, or do not fit the network.
        MissingDependencyError: torch is not installed.
    """
    torch = require("torch", extra="train")
    if not isinstance(data, bytes | bytearray) or not data:
        raise InvalidInputError(f"a state blob must be non-empty bytes, got {type(data).__name__}")
    try:
        blob = torch.load(io.BytesIO(bytes(data)), weights_only=True)
    except Exception as exc:  # torch raises untyped unpickling errors
        raise InvalidInputError(f"not a curator state blob: {exc}") from exc
    if not isinstance(blob, dict) or blob.get("format") != STATE_FORMAT:
        raise InvalidInputError(f"not a curator state blob (expected format {STATE_FORMAT!r})")
    metadata = ModelMetadata.from_props(blob["metadata"])
    module = build_embedder(
        blob["arch"],
        embedding_dim=metadata.embedding_dim,
        num_classes=len(metadata.class_names),
        input_size=metadata.input_size,
        channels=metadata.channels,
    )
    try:
        module.load_state_dict(blob["state_dict"])
    except RuntimeError as exc:
        raise InvalidInputError(f"the state blob does not fit {blob['arch']}: {exc}") from exc
    module.eval()
    return module, metadata


def _frames(frames: Any, name: str) -> np.ndarray:
    arr = np.asarray(frames)
    if arr.dtype != np.uint8:
        raise InvalidInputError(f"{name} must be uint8 pixels, got dtype {arr.dtype}")
    if arr.ndim == 3:
        arr = arr[..., None]  # (N, H, W) gray frames
    if arr.ndim != 4 or arr.shape[3] not in (1, 3):
        raise InvalidInputError(f"{name} must be (N, H, W) or (N, H, W, 1 | 3), got {arr.shape}")
    return arr


def _held_out_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[Any, Any]:
    """Stratified split: per class, ``round(fraction * count)`` indices held out (at least one
    when the class has two or more frames)."""
    if not isinstance(fraction, float | int) or not 0.0 < fraction < 1.0:
        raise InvalidInputError(f"held_out_fraction must be in (0, 1), got {fraction!r}")
    rng = np.random.default_rng(seed)
    held: list[np.ndarray] = []
    for cls in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        k = min(max(round(fraction * len(idx)), 1 if len(idx) > 1 else 0), len(idx) - 1)
        held.append(idx[:k])
    held_idx = np.sort(np.concatenate(held)) if held else np.zeros(0, np.intp)
    train_mask = np.ones(len(labels), dtype=bool)
    train_mask[held_idx] = False
    return np.flatnonzero(train_mask), held_idx


def _first_metadata(
    frames: np.ndarray,
    class_names: tuple[str, ...],
    model_version: str,
    embedding_dim: int,
    input_size: int | tuple[int, int] | None,
) -> ModelMetadata:
    """Metadata of a first model: the frames' channels and size, mean and std measured on at
    most :data:`_STATS_FRAMES` evenly spaced frames (bounded memory)."""
    channels: Literal["rgb", "gray"] = "gray" if frames.shape[3] == 1 else "rgb"
    size = input_size if input_size is not None else (frames.shape[1], frames.shape[2])
    sample = frames[:: max(1, len(frames) // _STATS_FRAMES)]
    pixels = sample.reshape(-1, sample.shape[3]).astype(np.float64) / 255.0
    return ModelMetadata(
        model_version=model_version,
        class_names=class_names,
        embedding_dim=embedding_dim,
        input_size=(size, size) if isinstance(size, int) else (size[0], size[1]),
        channels=channels,
        mean=tuple(round(float(m), 4) for m in pixels.mean(axis=0)),
        std=tuple(max(round(float(s), 4), 1e-3) for s in pixels.std(axis=0)),
    )


def train_model(
    labeled_frames: Any,
    labels: Any,
    class_names: Sequence[str],
    *,
    model_version: str,
    unlabeled_frames: Any = None,
    pretrain_epochs: int = 0,
    epochs: int = 5,
    held_out_fraction: float = 0.2,
    held_out: tuple[Any, Any] | None = None,
    parent: bytes | None = None,
    arch: str = "tiny_cnn",
    embedding_dim: int = 64,
    input_size: int | tuple[int, int] | None = None,
    batch_size: int = 64,
    learning_rate: float = 2e-3,
    seed: int = 0,
) -> TrainedModel:
    """Train, evaluate and export a model (see the module docstring for the steps).

    Args:
        labeled_frames: ``(N, H, W, C)`` uint8 frames (``C`` 1 or 3), or ``(N, H, W)`` gray.
        labels: ``(N,)`` class indices into ``class_names``.
        class_names: the ``K`` class names; with a parent they must be the parent's.
        model_version: the new model's ``curator.model_version``.
        unlabeled_frames: frames for SimCLR pretraining (same layout as ``labeled_frames``).
        pretrain_epochs: SimCLR epochs on ``unlabeled_frames`` (0: no pretraining).
        epochs: fine-tuning epochs.
        held_out_fraction: fraction of each class held out, when ``held_out`` is not given.
        held_out: explicit ``(frames, labels)`` to evaluate on; then every labeled frame trains.
        parent: the current model's state blob (:attr:`TrainedModel.state_dict`) to start from;
            its architecture, embedding width and preprocessing are kept.
        arch: the architecture of a fresh model (see ``build_embedder``).
        embedding_dim: ``D`` of a fresh model.
        input_size: input ``(H, W)`` of a fresh model (default: the frames' size).
        batch_size: fine-tuning batch size.
        learning_rate: fine-tuning step size.
        seed: seeds the split, the initial weights, the shuffling and the augmentations.

    Returns:
        The :class:`TrainedModel`.

    Raises:
        InvalidInputError: bad frames, labels, class names or parameters, an empty training or
            held-out set, or a parent whose classes differ.
        ModelContractError: the export does not round-trip (a bug, never expected).
        MissingDependencyError: the ``train`` extra is not installed.
    """
    seed = check_seed(seed)
    frames = _frames(labeled_frames, "labeled_frames")
    names = tuple(class_names)
    y = check_labels(labels, len(frames), len(names))
    if held_out is None:
        train_idx, held_idx = _held_out_split(y, held_out_fraction, seed)
        held = (frames[held_idx], y[held_idx])
        frames, y = frames[train_idx], y[train_idx]
    else:
        held_frames = _frames(held_out[0], "held_out frames")
        held = (held_frames, check_labels(held_out[1], len(held_frames), len(names)))
    if len(frames) < 2 or len(held[0]) == 0:
        raise InvalidInputError(
            f"need at least 2 training frames and 1 held-out frame, got {len(frames)} and "
            f"{len(held[0])}"
        )
    parent_sha256 = None
    if parent is not None:
        module, parent_meta = load_state(parent)
        if parent_meta.class_names != names:
            raise InvalidInputError(
                f"class_names {list(names)} differ from the parent's "
                f"{list(parent_meta.class_names)}"
            )
        metadata = replace(parent_meta, model_version=model_version)
        parent_sha256 = hashlib.sha256(parent).hexdigest()
    else:
        metadata = _first_metadata(frames, names, model_version, embedding_dim, input_size)
        module = build_embedder(
            arch,
            embedding_dim=embedding_dim,
            num_classes=len(names),
            input_size=metadata.input_size,
            channels=metadata.channels,
            seed=seed,
        )
    pretrain_losses: tuple[float, ...] = ()
    n_unlabeled = 0
    if pretrain_epochs and unlabeled_frames is None:
        raise InvalidInputError(f"pretrain_epochs={pretrain_epochs} needs unlabeled_frames")
    if pretrain_epochs:
        unlabeled = _frames(unlabeled_frames, "unlabeled_frames")
        n_unlabeled = len(unlabeled)
        pretrained = pretrain_simclr(module, unlabeled, metadata, epochs=pretrain_epochs, seed=seed)
        pretrain_losses = pretrained.epoch_losses
    tuned = finetune(
        module,
        frames,
        y,
        metadata,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        seed=seed,
    )
    metrics = evaluate(module, held[0], held[1], metadata)
    return TrainedModel(
        onnx=export_onnx(module, metadata),
        state_dict=save_state(module, metadata),
        metadata=metadata,
        metrics=metrics,
        train_losses=tuned.epoch_losses,
        pretrain_losses=pretrain_losses,
        n_train=len(frames),
        n_unlabeled=n_unlabeled,
        parent_sha256=parent_sha256,
    )
