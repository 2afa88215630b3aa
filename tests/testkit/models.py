"""Small real ONNX models for edge and inference tests, built with :func:`linear_model`.

A linear embedding of a small input is enough to exercise the whole selector path with a real
onnxruntime session in milliseconds; the MobileNetV3-class model of the benchmark is built by
``curator model init``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from curator.inference import ModelMetadata, linear_model

__all__ = ["linear_onnx", "write_linear_onnx"]


def linear_onnx(
    *,
    version: str = "lin-1",
    classes: int = 4,
    dim: int = 16,
    size: int = 16,
    seed: int = 0,
    with_logits: bool = True,
) -> bytes:
    """A random linear model on ``size x size`` RGB input (L2-normalised embedding)."""
    rng = np.random.default_rng(seed)
    names = tuple(f"class_{i}" for i in range(classes))
    meta = ModelMetadata(
        model_version=version,
        class_names=names if with_logits else (),
        embedding_dim=dim,
        input_size=(size, size),
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
    )
    p = 3 * size * size
    head_w = rng.standard_normal((dim, classes)).astype(np.float32) * 3 if with_logits else None
    head_b = np.zeros(classes, np.float32) if with_logits else None
    return linear_model(
        rng.standard_normal((p, dim)).astype(np.float32) / np.sqrt(p),
        np.zeros(dim, np.float32),
        head_w,
        head_b,
        meta,
        activation="l2",
    )


def write_linear_onnx(path: Path, **kwargs: object) -> Path:
    """Write :func:`linear_onnx` to ``path`` and return it."""
    path.write_bytes(linear_onnx(**kwargs))  # type: ignore[arg-type]
    return path
