"""Build small contract-satisfying ONNX models from numpy weights, without torch.

:func:`linear_model` writes the graph::

    images (N, C, H, W) -> Flatten -> MatMul W_e -> Add b_e -> [Relu | L2-normalise] -> embedding
    embedding -> MatMul W_h -> Add b_h -> logits

with the ``curator.*`` metadata in ``metadata_props``. It serves tests and demos (a softmax
regression head fitted in numpy, run through onnxruntime) and shows the exporter's target.
:func:`finish_model` attaches the metadata, checks and serialises a model; the torch exporter
(:mod:`curator.training.export`) shares it. Both need the ``onnx`` package (extra ``train``).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from curator._optional import require
from curator.errors import InvalidInputError
from curator.inference.contract import EMBEDDING, INPUT_NAME, LOGITS, ModelMetadata

__all__ = ["OPSET", "finish_model", "linear_model"]

OPSET = 17
"""ONNX opset the built models declare."""

_IR_VERSION = 8  # read by every onnxruntime >= 1.10


def _weights(x: Any, name: str, shape: tuple[int, ...]) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float32)
    if arr.shape != shape:
        raise InvalidInputError(f"{name} must have shape {shape}, got {arr.shape}")
    if not np.isfinite(arr).all():
        raise InvalidInputError(f"{name} holds NaN or inf")
    return arr


def linear_model(
    embed_weight: Any,
    embed_bias: Any,
    head_weight: Any | None,
    head_bias: Any | None,
    metadata: ModelMetadata,
    *,
    activation: Literal["none", "relu", "l2"] = "none",
    input_name: str = INPUT_NAME,
    embedding_name: str = EMBEDDING,
    logits_name: str = LOGITS,
) -> bytes:
    """Serialise a linear embedding (and optional linear head) as an ONNX model.

    Args:
        embed_weight: ``(P, D)`` with ``P = C * H * W`` from the metadata and
            ``D = metadata.embedding_dim``.
        embed_bias: ``(D,)``.
        head_weight: ``(D, K)`` with ``K = len(metadata.class_names)``, or ``None`` for an
            embedding-only model.
        head_bias: ``(K,)``, or ``None`` with ``head_weight``.
        metadata: written to ``metadata_props``.
        activation: applied to the embedding before the head: ``"none"``, ``"relu"`` or
            ``"l2"`` (unit L2 norm per row, ONNX ``LpNormalization``).
        input_name: the graph input's name (other names make a "user model" for tests).
        embedding_name: the embedding output's name.
        logits_name: the logits output's name.

    Returns:
        The serialised model, checked with ``onnx.checker``.

    Raises:
        InvalidInputError: weight shapes disagree with the metadata, or a bad activation.
        MissingDependencyError: onnx is not installed.
    """
    onnx = require("onnx", extra="train")
    helper, numpy_helper = onnx.helper, onnx.numpy_helper
    if activation not in ("none", "relu", "l2"):
        raise InvalidInputError(f"activation must be one of none, relu, l2, got {activation!r}")
    (h, w), c, d = metadata.input_size, metadata.num_channels, metadata.embedding_dim
    w_e = _weights(embed_weight, "embed_weight", (c * h * w, d))
    b_e = _weights(embed_bias, "embed_bias", (d,))
    if (head_weight is None) != (head_bias is None):
        raise InvalidInputError("give both head_weight and head_bias, or neither")
    inits = [numpy_helper.from_array(w_e, "W_e"), numpy_helper.from_array(b_e, "b_e")]
    raw = "embedding_linear" if activation != "none" else embedding_name
    nodes = [
        helper.make_node("Flatten", [input_name], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "W_e"], ["embedding_matmul"]),
        helper.make_node("Add", ["embedding_matmul", "b_e"], [raw]),
    ]
    if activation == "relu":
        nodes.append(helper.make_node("Relu", [raw], [embedding_name]))
    elif activation == "l2":
        nodes.append(helper.make_node("LpNormalization", [raw], [embedding_name], axis=1, p=2))
    f32 = onnx.TensorProto.FLOAT
    outputs = [helper.make_tensor_value_info(embedding_name, f32, ["N", d])]
    if head_weight is not None:
        k = len(metadata.class_names)
        if k == 0:
            raise InvalidInputError("a logits head needs metadata.class_names; none are given")
        inits += [
            numpy_helper.from_array(_weights(head_weight, "head_weight", (d, k)), "W_h"),
            numpy_helper.from_array(_weights(head_bias, "head_bias", (k,)), "b_h"),
        ]
        nodes += [
            helper.make_node("MatMul", [embedding_name, "W_h"], ["logits_matmul"]),
            helper.make_node("Add", ["logits_matmul", "b_h"], [logits_name]),
        ]
        outputs.append(helper.make_tensor_value_info(logits_name, f32, ["N", k]))
    graph = helper.make_graph(
        nodes,
        "curator_linear",
        [helper.make_tensor_value_info(input_name, f32, ["N", c, h, w])],
        outputs,
        initializer=inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="curator"
    )
    model.ir_version = _IR_VERSION
    return finish_model(model, metadata)


def finish_model(model: Any, metadata: ModelMetadata) -> bytes:
    """Write ``metadata`` into an ONNX model's ``metadata_props``, check it and serialise it.

    The one place the ``curator.*`` keys are attached to a model, shared by
    :func:`linear_model` and the torch exporter (:func:`curator.training.export.export_onnx`).
    Existing ``metadata_props`` are replaced.

    Args:
        model: an ``onnx.ModelProto``; changed in place.
        metadata: written with :meth:`ModelMetadata.to_props`.

    Returns:
        The serialised model.

    Raises:
        onnx.checker.ValidationError: the graph is not valid ONNX.
        MissingDependencyError: onnx is not installed.
    """
    onnx = require("onnx", extra="train")
    onnx.helper.set_model_props(model, metadata.to_props())
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())
