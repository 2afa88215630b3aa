"""``OnnxModel``: load a contract-checked ONNX model and turn frames into embeddings and logits.

onnxruntime is imported when a model is loaded (extra ``edge``), never at ``import curator``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from curator._optional import require
from curator.errors import InvalidInputError, ModelContractError
from curator.inference.contract import (
    EMBEDDING,
    INPUT_NAME,
    LOGITS,
    ModelMetadata,
    check_input,
    check_output,
)
from curator.inference.preprocess import as_frames, preprocess_frames
from curator.uncertainty import softmax

__all__ = ["OnnxModel", "Prediction"]

Float32Array = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Prediction:
    """What a model says about ``N`` frames.

    Attributes:
        embeddings: ``(N, D)`` float32.
        logits: ``(N, C)`` float32, or ``None`` for an embedding-only model.
        model_version: the model that made them; embeddings of different versions never mix.
    """

    embeddings: Float32Array
    logits: Float32Array | None
    model_version: str

    def __len__(self) -> int:
        return len(self.embeddings)

    @property
    def probs(self) -> Float32Array:
        """``(N, C)`` float32 class probabilities (softmax of the logits).

        Raises:
            ModelContractError: the model is embedding-only, so there are no probabilities.
        """
        if self.logits is None:
            raise ModelContractError(
                f"model {self.model_version!r} is embedding-only (no logits output): class "
                "probabilities and uncertainty scores are not available"
            )
        return softmax(self.logits).astype(np.float32)


def _read_model(path_or_bytes: str | os.PathLike[str] | bytes) -> tuple[bytes, str]:
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        return bytes(path_or_bytes), "<bytes>"
    path = Path(path_or_bytes)
    try:
        return path.read_bytes(), str(path)
    except OSError as exc:
        raise ModelContractError(f"cannot read ONNX model {str(path)!r}: {exc}") from exc


class OnnxModel:
    """A model that satisfies the contract of docs/model-contract.md, run with onnxruntime.

    Args:
        path_or_bytes: an ``.onnx`` file or its bytes.
        output_names: for a model whose outputs are not called ``embedding``/``logits``, the
            graph output to use for each role, e.g. ``{"embedding": "feat", "logits": "fc"}``.
            ``"embedding"`` is required; leave out ``"logits"`` for an embedding-only use.
            By default the outputs ``embedding`` and (if present) ``logits`` are used.
        input_name: the graph input to feed when it is not called ``images``.
        intra_op_threads: onnxruntime's intra-op thread count (default: its own choice).
        providers: onnxruntime execution providers (default ``["CPUExecutionProvider"]``).

    Raises:
        ModelContractError: the bytes are not an ONNX model, or the model breaks the contract
            (the message names what is wrong).
        InvalidInputError: a provider onnxruntime does not have.
        MissingDependencyError: onnxruntime is not installed.
    """

    def __init__(
        self,
        path_or_bytes: str | os.PathLike[str] | bytes,
        *,
        output_names: Mapping[str, str] | None = None,
        input_name: str | None = None,
        intra_op_threads: int | None = None,
        providers: Sequence[str] | None = None,
    ) -> None:
        ort = require("onnxruntime", extra="edge")
        data, where = _read_model(path_or_bytes)
        if not data:
            raise ModelContractError(f"ONNX model {where} is empty (0 bytes)")
        self._sha256 = hashlib.sha256(data).hexdigest()
        available = ort.get_available_providers()
        chosen = [providers] if isinstance(providers, str) else list(providers or [])
        chosen = chosen or ["CPUExecutionProvider"]
        unknown = [p for p in chosen if p not in available]
        if unknown:
            raise InvalidInputError(
                f"unknown onnxruntime provider(s) {unknown}; available: {', '.join(available)}"
            )
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if intra_op_threads is not None:
            if isinstance(intra_op_threads, bool) or not isinstance(intra_op_threads, int):
                raise InvalidInputError(
                    f"intra_op_threads must be a non-negative integer, got {intra_op_threads!r}"
                )
            options.intra_op_num_threads = intra_op_threads
        try:
            self._session = ort.InferenceSession(data, options, providers=chosen)
        except Exception as exc:  # onnxruntime raises its own untyped errors
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelContractError(
                f"{where} is not a valid ONNX model (onnxruntime: {first})"
            ) from exc
        props = dict(self._session.get_modelmeta().custom_metadata_map)
        self._meta = ModelMetadata.from_props(props)
        self._input_name = self._check_inputs(input_name)
        self._outputs = self._check_outputs(output_names)
        self._shapes_checked = False

    def _check_inputs(self, input_name: str | None) -> str:
        inputs = {i.name: i for i in self._session.get_inputs()}
        want = input_name or INPUT_NAME
        if want not in inputs:
            hint = "" if input_name else "; map another name with input_name=..."
            raise ModelContractError(
                f"model has no input {want!r} (inputs: {', '.join(sorted(inputs))}){hint}"
            )
        if len(inputs) != 1:
            extra = sorted(set(inputs) - {want})
            raise ModelContractError(
                f"model must have exactly one input {want!r}; extra input(s): {', '.join(extra)}"
            )
        node = inputs[want]
        check_input(want, node.type, node.shape, self._meta)
        return want

    def _check_outputs(self, output_names: Mapping[str, str] | None) -> dict[str, str]:
        outputs = {o.name: o for o in self._session.get_outputs()}
        if output_names is None:
            mapping = {EMBEDDING: EMBEDDING}
            if LOGITS in outputs:
                mapping[LOGITS] = LOGITS
        else:
            mapping = dict(output_names)
            unknown = sorted(set(mapping) - {EMBEDDING, LOGITS})
            if unknown or EMBEDDING not in mapping:
                raise ModelContractError(
                    f"output_names must map 'embedding' (required) and 'logits' (optional) "
                    f"to graph outputs, got keys {sorted(mapping)}"
                )
        for role, name in mapping.items():
            if name not in outputs:
                hint = "" if output_names else "; map other names with output_names=..."
                raise ModelContractError(
                    f"model has no output {name!r} for the {role} "
                    f"(outputs: {', '.join(sorted(outputs))}){hint}"
                )
        emb = outputs[mapping[EMBEDDING]]
        width_key = "curator.embedding_dim"
        check_output(EMBEDDING, emb.name, emb.type, emb.shape, self._meta.embedding_dim, width_key)
        if LOGITS in mapping:
            if not self._meta.class_names:
                raise ModelContractError(
                    "model has a logits output but metadata curator.class_names is empty"
                )
            lg = outputs[mapping[LOGITS]]
            n_classes = len(self._meta.class_names)
            check_output(LOGITS, lg.name, lg.type, lg.shape, n_classes, "curator.class_names")
        return mapping

    @property
    def metadata(self) -> ModelMetadata:
        """The parsed ``curator.*`` metadata."""
        return self._meta

    @property
    def model_version(self) -> str:
        return self._meta.model_version

    @property
    def class_names(self) -> tuple[str, ...]:
        return self._meta.class_names

    @property
    def embedding_dim(self) -> int:
        return self._meta.embedding_dim

    @property
    def input_size(self) -> tuple[int, int]:
        """``(H, W)`` of the model input."""
        return self._meta.input_size

    @property
    def has_logits(self) -> bool:
        """False for an embedding-only model (or one used as such through ``output_names``)."""
        return LOGITS in self._outputs

    @property
    def sha256(self) -> str:
        """Hex sha256 of the model bytes, as devices verify a downloaded model."""
        return self._sha256

    def preprocess(self, frames: Any) -> Float32Array:
        """uint8 frames to the ``(N, C, H, W)`` float32 input; see :func:`preprocess_frames`.

        Raises:
            InvalidInputError: frames not uint8 or wrongly shaped.
        """
        return preprocess_frames(frames, self._meta)

    def run(self, batch: Any) -> Prediction:
        """Run the model on an already preprocessed batch.

        Args:
            batch: ``(N, C, H, W)`` float32 matching the metadata.

        Returns:
            The prediction for the ``N`` inputs.

        Raises:
            InvalidInputError: wrong dtype or shape.
            ModelContractError: the outputs' shapes break the contract.
        """
        x = np.asarray(batch)
        c, (h, w) = self._meta.num_channels, self._meta.input_size
        if x.dtype != np.float32 or x.ndim != 4 or x.shape[1:] != (c, h, w):
            raise InvalidInputError(
                f"batch must be float32 (N, {c}, {h}, {w}), got {x.dtype} {x.shape}; "
                "use preprocess() on uint8 frames"
            )
        n_classes = len(self._meta.class_names)
        if len(x) == 0:
            logits = np.empty((0, n_classes), np.float32) if self.has_logits else None
            return Prediction(
                np.empty((0, self.embedding_dim), np.float32), logits, self.model_version
            )
        roles = list(self._outputs)
        values = self._session.run([self._outputs[r] for r in roles], {self._input_name: x})
        got = dict(zip(roles, values, strict=True))
        widths = {EMBEDDING: self.embedding_dim, LOGITS: n_classes}
        if not self._shapes_checked:
            for role, value in got.items():
                shape, want = np.shape(value), (len(x), widths[role])
                if shape != want:
                    raise ModelContractError(
                        f"output {role} has shape {shape} for a batch of {len(x)}; "
                        f"the contract and metadata say {want}"
                    )
            self._shapes_checked = True
        embeddings = np.asarray(got[EMBEDDING], dtype=np.float32)
        logits = np.asarray(got[LOGITS], dtype=np.float32) if LOGITS in got else None
        return Prediction(embeddings, logits, self.model_version)

    def predict(self, frames: Any, batch_size: int = 32) -> Prediction:
        """Embeddings (and logits) of uint8 frames, preprocessed and run in batches.

        Args:
            frames: see :func:`~curator.inference.preprocess.as_frames`.
            batch_size: frames per onnxruntime call.

        Returns:
            The prediction, one row per frame, in order.

        Raises:
            InvalidInputError: bad frames or batch size.
            ModelContractError: the outputs' shapes break the contract.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidInputError(f"batch_size must be a positive integer, got {batch_size!r}")
        items: Any = frames if isinstance(frames, np.ndarray) and frames.ndim == 4 else None
        if items is None:
            items = as_frames(frames)
        parts = [
            self.run(self.preprocess(items[i : i + batch_size]))
            for i in range(0, len(items), batch_size)
        ]
        if not parts:
            return self.run(np.empty((0, self._meta.num_channels, *self.input_size), np.float32))
        logits = None
        if parts[0].logits is not None:
            logits = np.concatenate([p.logits for p in parts if p.logits is not None])
        return Prediction(np.concatenate([p.embeddings for p in parts]), logits, self.model_version)

    def __repr__(self) -> str:
        kind = "embedding+logits" if self.has_logits else "embedding-only"
        return (
            f"OnnxModel(version={self.model_version!r}, {kind}, "
            f"input={self._input_name}{list(self.input_size)}, sha256={self.sha256[:12]})"
        )
