"""Factories (as fixtures) that build real ONNX models, sound or deliberately broken.

Models are made with onnx's helper API, without torch, and run by the real onnxruntime.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pytest

from curator.inference.build import linear_model
from curator.inference.contract import ModelMetadata

FLOAT, INT64, DOUBLE = 1, 7, 11  # onnx.TensorProto element types


def _make_meta(**overrides: Any) -> ModelMetadata:
    """A small gray 4x5 model with 3 embedding dims and 4 classes, unless told otherwise."""
    base = ModelMetadata(
        model_version="test-1",
        class_names=("a", "b", "c", "d"),
        embedding_dim=3,
        input_size=(4, 5),
        channels="gray",
        mean=(0.25,),
        std=(0.5,),
    )
    return replace(base, **overrides)


@dataclass
class LinearWeights:
    embed_weight: np.ndarray
    embed_bias: np.ndarray
    head_weight: np.ndarray | None
    head_bias: np.ndarray | None

    def forward(
        self, x: np.ndarray, activation: str = "none"
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """The same linear algebra in float64 numpy: the oracle."""
        flat = x.reshape(len(x), int(np.prod(x.shape[1:]))).astype(np.float64)
        emb = flat @ self.embed_weight + self.embed_bias
        if activation == "relu":
            emb = np.maximum(emb, 0.0)
        elif activation == "l2":
            emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
        if self.head_weight is None or self.head_bias is None:
            return emb, None
        return emb, emb @ self.head_weight + self.head_bias


def _random_weights(
    meta: ModelMetadata, rng: np.random.Generator, head: bool = True
) -> LinearWeights:
    h, w = meta.input_size
    p, d, k = meta.num_channels * h * w, meta.embedding_dim, len(meta.class_names)
    return LinearWeights(
        rng.normal(size=(p, d)).astype(np.float32) / np.sqrt(p),
        rng.normal(size=d).astype(np.float32),
        rng.normal(size=(d, k)).astype(np.float32) if head else None,
        rng.normal(size=k).astype(np.float32) if head else None,
    )


def _build(meta: ModelMetadata, weights: LinearWeights, **kwargs: Any) -> bytes:
    return linear_model(
        weights.embed_weight,
        weights.embed_bias,
        weights.head_weight,
        weights.head_bias,
        meta,
        **kwargs,
    )


def _with_props(model: bytes, props: dict[str, str]) -> bytes:
    """The same model with its metadata_props replaced by ``props``."""
    import onnx
    from onnx import helper

    proto = onnx.load_from_string(model)
    del proto.metadata_props[:]
    helper.set_model_props(proto, props)
    return bytes(proto.SerializeToString())


def _graph_model(
    nodes: list[Any],
    inputs: list[tuple[str, int, list[Any]]],
    outputs: list[tuple[str, int, list[Any]]],
    props: dict[str, str],
    initializers: dict[str, np.ndarray] | None = None,
) -> bytes:
    """A model from raw nodes, for shapes and types linear_model would never write."""
    from onnx import helper, numpy_helper

    graph = helper.make_graph(
        nodes,
        "test",
        [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
        [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs],
        initializer=[numpy_helper.from_array(v, k) for k, v in (initializers or {}).items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, props)
    return bytes(model.SerializeToString())


@pytest.fixture
def make_meta() -> Callable[..., ModelMetadata]:
    return _make_meta


@pytest.fixture
def random_weights() -> Callable[..., LinearWeights]:
    return _random_weights


@pytest.fixture
def build() -> Callable[..., bytes]:
    return _build


@pytest.fixture
def with_props() -> Callable[[bytes, dict[str, str]], bytes]:
    return _with_props


@pytest.fixture
def graph_model() -> Callable[..., bytes]:
    return _graph_model


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20240601)


@pytest.fixture(scope="module")
def small_model() -> tuple[Any, LinearWeights]:
    """A gray 4x5 model (3-D embedding, 4 classes) and its weights, shared by a module."""
    from curator.inference.model import OnnxModel

    meta = _make_meta()
    weights = _random_weights(meta, np.random.default_rng(7))
    return OnnxModel(_build(meta, weights)), weights
