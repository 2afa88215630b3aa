"""Export a torch network to ONNX bytes that satisfy the model contract (docs/model-contract.md).

:func:`export_onnx` names the graph's input ``images`` and its outputs ``embedding`` and
``logits`` with a dynamic batch axis, writes the ``curator.*`` metadata with the same helper as
:func:`curator.inference.build.linear_model` (:func:`~curator.inference.build.finish_model`),
and by default proves the result: it opens the bytes with :class:`~curator.inference.OnnxModel`
(the same contract checks the edge runs) and compares onnxruntime's outputs with torch's on a
random batch of another size than the one traced.

It uses torch's TorchScript exporter (``dynamo=False``): the ``torch.export``-based exporter
needs ``onnxscript``, which the ``train`` extra does not install, and this must work offline.
The TorchScript exporter's deprecation warnings are silenced inside the call only.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from curator._optional import require
from curator.errors import InvalidInputError, ModelContractError
from curator.index.base import atomic_write
from curator.inference.build import finish_model
from curator.inference.contract import EMBEDDING, INPUT_NAME, LOGITS, ModelMetadata
from curator.inference.model import OnnxModel

if TYPE_CHECKING:
    import torch

__all__ = ["ATOL", "RTOL", "export_onnx"]

ATOL = 1e-4
"""Absolute tolerance of the torch-vs-onnxruntime check (embeddings have unit rows)."""
RTOL = 1e-3
"""Relative tolerance of the same check (logits can be larger than 1)."""

_TRACE_BATCH = 2  # traced with 2 rows, checked with 3: the batch axis must really be dynamic
_CHECK_BATCH = 3
_MIN_OPSET, _MAX_OPSET = 13, 20


def _outputs(value: Any, torch: Any) -> tuple[Any, ...]:
    """The module's outputs as a tuple of tensors: ``(embedding,)`` or ``(embedding, logits)``."""
    values = tuple(value) if isinstance(value, tuple | list) else (value,)
    if not 1 <= len(values) <= 2 or not all(isinstance(v, torch.Tensor) for v in values):
        raise ModelContractError(
            "the module's forward(x) must return an embedding tensor or a tuple "
            f"(embedding, logits), got {type(value).__name__} of {len(values)} item(s)"
        )
    return values


def _check_widths(values: tuple[Any, ...], metadata: ModelMetadata, batch: int) -> None:
    """Compare the module's output shapes with what ``metadata`` promises."""
    emb_shape = tuple(values[0].shape)
    if emb_shape != (batch, metadata.embedding_dim):
        raise ModelContractError(
            f"the module's embedding has shape {emb_shape} for a batch of {batch}, but "
            f"metadata embedding_dim is {metadata.embedding_dim} "
            f"(expected {(batch, metadata.embedding_dim)})"
        )
    if len(values) == 2:
        k = len(metadata.class_names)
        logits_shape = tuple(values[1].shape)
        if logits_shape != (batch, k):
            raise ModelContractError(
                f"the module's logits have shape {logits_shape} for a batch of {batch}, but "
                f"metadata class_names has {k} name(s) (expected {(batch, k)})"
            )


def _check_module_attrs(module: Any, metadata: ModelMetadata) -> None:
    """Networks from ``build_embedder`` record channels and input size; compare them."""
    channels = getattr(module, "channels", None)
    if isinstance(channels, str) and channels != metadata.channels:
        raise ModelContractError(
            f"the module was built for channels {channels!r} but metadata says "
            f"{metadata.channels!r}"
        )
    size = getattr(module, "input_size", None)
    if isinstance(size, tuple) and size != metadata.input_size:
        raise ModelContractError(
            f"the module was built for input_size {list(size)} but metadata says "
            f"{list(metadata.input_size)}"
        )


def _writer(data: bytes) -> Callable[[IO[bytes]], None]:
    def write(f: IO[bytes]) -> None:
        f.write(data)

    return write


def _compare(torch_values: tuple[Any, ...], model: OnnxModel, batch: np.ndarray) -> None:
    pred = model.run(batch)
    pairs: list[tuple[str, np.ndarray | None, Any]] = [
        (EMBEDDING, pred.embeddings, torch_values[0])
    ]
    if len(torch_values) == 2:
        pairs.append((LOGITS, pred.logits, torch_values[1]))
    for role, got, want in pairs:
        want_np = want.detach().cpu().numpy()
        if got is None or got.shape != want_np.shape:
            shape = None if got is None else got.shape
            raise ModelContractError(
                f"onnxruntime's {role} has shape {shape}, torch's {want_np.shape}"
            )
        if not np.allclose(got, want_np, atol=ATOL, rtol=RTOL):
            worst = float(np.max(np.abs(got - want_np)))
            raise ModelContractError(
                f"onnxruntime's {role} differs from torch's by up to {worst:.3g} "
                f"(tolerance atol={ATOL}, rtol={RTOL}) on a random batch of {len(batch)}"
            )


def export_onnx(
    module: torch.nn.Module,
    metadata: ModelMetadata,
    path: str | os.PathLike[str] | None = None,
    *,
    opset: int = 17,
    check: bool = True,
) -> bytes:
    """Export ``module`` as contract-satisfying ONNX bytes, optionally written to ``path``.

    The module is exported in eval mode (BatchNorm running statistics, no dropout) on the device
    its parameters are on; its training mode is restored afterwards. ``forward(x)`` must return
    ``(embedding, logits)`` (or the embedding alone, for an embedding-only model).

    Args:
        module: a torch module taking ``(N, C, H, W)`` float32, e.g. from
            :func:`curator.training.backbones.build_embedder`.
        metadata: the model's version, class names and preprocessing, written to
            ``metadata_props``; its ``embedding_dim``, class count, channels and input size
            must match the module.
        path: when given, the bytes are also written there atomically (temp file beside it,
            fsync, rename).
        opset: ONNX opset to export with, 13 to 20.
        check: load the bytes with :class:`~curator.inference.OnnxModel` and compare its
            outputs with torch's on a seeded random batch (within :data:`ATOL`/:data:`RTOL`).

    Returns:
        The serialised ONNX model.

    Raises:
        ModelContractError: the module's outputs disagree with ``metadata`` (widths, channels,
            input size), the exporter fails, or onnxruntime's outputs differ from torch's.
        InvalidInputError: ``metadata`` is not a ``ModelMetadata`` or a bad ``opset``.
        MissingDependencyError: torch, onnx or onnxruntime is not installed.
        OSError: ``path`` cannot be written.
    """
    torch = require("torch", extra="train")
    require("onnx", extra="train")
    if not isinstance(metadata, ModelMetadata):
        raise InvalidInputError(f"metadata must be a ModelMetadata, got {type(metadata).__name__}")
    if isinstance(opset, bool) or not isinstance(opset, int):
        raise InvalidInputError(f"opset must be an integer, got {opset!r}")
    if not _MIN_OPSET <= opset <= _MAX_OPSET:
        raise InvalidInputError(f"opset must be in [{_MIN_OPSET}, {_MAX_OPSET}], got {opset}")
    _check_module_attrs(module, metadata)
    c, (h, w) = metadata.num_channels, metadata.input_size
    rng = np.random.default_rng(0)
    device = next((p.device for p in module.parameters()), torch.device("cpu"))
    trace = torch.from_numpy(rng.standard_normal((_TRACE_BATCH, c, h, w), dtype=np.float32))
    trace = trace.to(device)
    check_batch = rng.standard_normal((_CHECK_BATCH, c, h, w), dtype=np.float32)
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            try:
                traced = _outputs(module(trace), torch)
            except RuntimeError as exc:  # e.g. a channel count the first conv does not take
                first = str(exc).strip().splitlines()[0]
                raise ModelContractError(
                    f"the module cannot run on a {(_TRACE_BATCH, c, h, w)} batch as the "
                    f"metadata describes: {first}"
                ) from exc
            _check_widths(traced, metadata, _TRACE_BATCH)
            names = [EMBEDDING, LOGITS][: len(traced)]
            buffer = io.BytesIO()
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)
                    torch.onnx.export(
                        module,
                        (trace,),
                        buffer,
                        input_names=[INPUT_NAME],
                        output_names=names,
                        dynamic_axes={name: {0: "N"} for name in [INPUT_NAME, *names]},
                        opset_version=opset,
                        dynamo=False,
                    )
            except (RuntimeError, torch.onnx.errors.OnnxExporterError) as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
                raise ModelContractError(f"torch.onnx.export failed: {first}") from exc
            expected = (
                _outputs(module(torch.from_numpy(check_batch).to(device)), torch) if check else ()
            )
    finally:
        module.train(was_training)
    onnx = require("onnx", extra="train")
    data = finish_model(onnx.load_from_string(buffer.getvalue()), metadata)
    if check:
        _compare(expected, OnnxModel(data), check_batch)
    if path is not None:
        atomic_write(path, _writer(data))
    return data
