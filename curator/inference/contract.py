"""The model contract: metadata keys and the checks an ONNX model's signature must pass.

A curator model has one input, ``images`` (float32, NCHW, dynamic batch), and the outputs
``embedding`` ``(N, D)`` and, optionally, ``logits`` ``(N, C)``, both float32. How to turn a
camera frame into that input is stored in the model itself, as ``metadata_props`` under the
``curator.*`` keys below, so the edge preprocesses exactly as training did:

=========================  ==================================  =========================
key                        value (a string)                    example
=========================  ==================================  =========================
``curator.model_version``  any non-empty string                ``"fmnist-2024-06-01"``
``curator.class_names``    JSON list of unique strings         ``["cat", "dog"]``
``curator.embedding_dim``  positive integer                    ``"64"``
``curator.input_size``     JSON ``[H, W]``                     ``"[28, 28]"``
``curator.channels``       ``"rgb"`` or ``"gray"``             ``"gray"``
``curator.mean``           JSON list, one per channel, [0, 1]  ``"[0.286]"``
``curator.std``            JSON list, one per channel, > 0     ``"[0.353]"``
``curator.resize``         ``"bilinear"`` or ``"nearest"``     ``"bilinear"``
=========================  ==================================  =========================

Every key is required; other keys are ignored. The functions here are pure: they take names,
types and shapes (as onnxruntime reports them) and raise :class:`ModelContractError`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from curator.errors import InvalidInputError, ModelContractError

__all__ = [
    "CHANNELS",
    "EMBEDDING",
    "INPUT_NAME",
    "LOGITS",
    "METADATA_KEYS",
    "RESIZE_METHODS",
    "ModelMetadata",
    "check_input",
    "check_output",
]

INPUT_NAME = "images"
EMBEDDING = "embedding"
LOGITS = "logits"
CHANNELS: dict[str, int] = {"rgb": 3, "gray": 1}
RESIZE_METHODS = ("bilinear", "nearest")

_PREFIX = "curator."
METADATA_KEYS = tuple(
    _PREFIX + k
    for k in (
        "model_version",
        "class_names",
        "embedding_dim",
        "input_size",
        "channels",
        "mean",
        "std",
        "resize",
    )
)
"""Every ``metadata_props`` key the contract requires."""

Dim = int | str | None
"""One dimension as onnxruntime reports it: an int when static, a name or None when dynamic."""


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidInputError(f"{name} must be a positive integer, got {value!r}")
    return value


def _floats(values: Any, name: str, n: int) -> tuple[float, ...]:
    if isinstance(values, np.ndarray) and values.ndim == 1:
        values = values.tolist()
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise InvalidInputError(f"{name} must be a list of {n} number(s), got {values!r}")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise InvalidInputError(f"{name} must hold finite numbers, got {values!r}")
        out.append(float(v))
    if len(out) != n:
        raise InvalidInputError(f"{name} must hold {n} value(s), one per channel, got {values!r}")
    return tuple(out)


def _empty(values: Any) -> bool:
    return isinstance(values, Sequence | np.ndarray) and len(values) == 0


@dataclass(frozen=True)
class ModelMetadata:
    """What a curator model says about itself: version, classes and preprocessing.

    Attributes:
        model_version: identifies the weights; embeddings of different versions never mix.
        class_names: one name per logit column; empty for an embedding-only model.
        embedding_dim: width ``D`` of the ``embedding`` output.
        input_size: ``(H, W)`` of the model input.
        channels: ``"rgb"`` (3 channels) or ``"gray"`` (1 channel, BT.601 luma).
        mean: per-channel mean in [0, 1] pixel units, subtracted after scaling to [0, 1];
            empty (the default) means zeros.
        std: per-channel standard deviation (> 0) the centred pixels are divided by; empty
            (the default) means ones.
        resize: ``"bilinear"`` (half-pixel centres) or ``"nearest"``.

    Raises:
        InvalidInputError: a field is malformed (the message names it).
    """

    model_version: str
    class_names: tuple[str, ...]
    embedding_dim: int
    input_size: tuple[int, int]
    channels: Literal["rgb", "gray"] = "rgb"
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    resize: Literal["bilinear", "nearest"] = "bilinear"

    def __post_init__(self) -> None:
        if not isinstance(self.model_version, str) or not self.model_version.strip():
            raise InvalidInputError(
                f"model_version must be a non-empty string, got {self.model_version!r}"
            )
        names = self.class_names
        if not isinstance(names, Sequence):
            raise InvalidInputError(f"class_names must be a sequence of strings, got {names!r}")
        if isinstance(names, str) or not all(isinstance(c, str) and c for c in names):
            raise InvalidInputError(f"class_names must be non-empty strings, got {names!r}")
        if len(set(names)) != len(names):
            raise InvalidInputError(f"class_names must be unique, got {list(names)!r}")
        object.__setattr__(self, "class_names", tuple(names))
        _positive_int(self.embedding_dim, "embedding_dim")
        size = self.input_size
        if isinstance(size, (str, bytes)) or not isinstance(size, Sequence) or len(size) != 2:
            raise InvalidInputError(f"input_size must be [H, W], got {size!r}")
        object.__setattr__(
            self, "input_size", (_positive_int(size[0], "H"), _positive_int(size[1], "W"))
        )
        if not isinstance(self.channels, str) or self.channels not in CHANNELS:
            raise InvalidInputError(
                f"channels must be one of {', '.join(CHANNELS)}, got {self.channels!r}"
            )
        n = CHANNELS[self.channels]
        mean = (0.0,) * n if _empty(self.mean) else _floats(self.mean, "mean", n)
        std = (1.0,) * n if _empty(self.std) else _floats(self.std, "std", n)
        if min(std) <= 0:
            raise InvalidInputError(f"std must be positive, got {list(std)!r}")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)
        if self.resize not in RESIZE_METHODS:
            raise InvalidInputError(
                f"resize must be one of {', '.join(RESIZE_METHODS)}, got {self.resize!r}"
            )

    @property
    def num_channels(self) -> int:
        """3 for ``"rgb"``, 1 for ``"gray"``."""
        return CHANNELS[self.channels]

    def to_props(self) -> dict[str, str]:
        """The ``metadata_props`` entries (all strings) that :meth:`from_props` reads back."""
        values: dict[str, Any] = {
            "model_version": self.model_version,
            "class_names": json.dumps(list(self.class_names)),
            "embedding_dim": str(self.embedding_dim),
            "input_size": json.dumps(list(self.input_size)),
            "channels": self.channels,
            "mean": json.dumps(list(self.mean)),
            "std": json.dumps(list(self.std)),
            "resize": self.resize,
        }
        return {_PREFIX + k: v for k, v in values.items()}

    @classmethod
    def from_props(cls, props: Mapping[str, str]) -> ModelMetadata:
        """Parse a model's ``metadata_props``.

        Args:
            props: key to string value; keys outside ``curator.*`` are ignored.

        Raises:
            ModelContractError: a required key is missing or its value does not parse
                (the message names the key and the value).
        """
        missing = [k for k in METADATA_KEYS if k not in props]
        if missing:
            raise ModelContractError(
                f"model metadata_props lack the key(s) {', '.join(missing)}; "
                "see docs/model-contract.md"
            )

        def parse_json(key: str) -> Any:
            try:
                return json.loads(props[_PREFIX + key])
            except (ValueError, RecursionError) as exc:
                raise ModelContractError(
                    f"metadata {_PREFIX}{key} is not valid JSON: {props[_PREFIX + key]!r}"
                ) from exc

        try:
            dim_text = props[_PREFIX + "embedding_dim"].strip()
            embedding_dim: Any = (
                int(dim_text) if dim_text.isascii() and dim_text.isdigit() else dim_text
            )
            class_names = parse_json("class_names")
            if not isinstance(class_names, list):
                raise InvalidInputError(f"class_names must be a JSON list, got {class_names!r}")
            return cls(
                model_version=props[_PREFIX + "model_version"],
                class_names=tuple(class_names),
                embedding_dim=embedding_dim,
                input_size=parse_json("input_size"),
                channels=props[_PREFIX + "channels"],  # type: ignore[arg-type]
                mean=parse_json("mean"),
                std=parse_json("std"),
                resize=props[_PREFIX + "resize"],  # type: ignore[arg-type]
            )
        except InvalidInputError as exc:
            raise ModelContractError(f"bad model metadata (curator.* keys): {exc}") from exc


def _shape_text(shape: Sequence[Dim]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def check_input(name: str, elem_type: str, shape: Sequence[Dim], meta: ModelMetadata) -> None:
    """Check the model input against the contract and the metadata.

    Args:
        name: the input's name, for messages.
        elem_type: onnxruntime's type string, e.g. ``"tensor(float)"``.
        shape: the declared shape.
        meta: the parsed metadata.

    Raises:
        ModelContractError: not float32, not 4-D, a fixed batch size, or a channel count or
            spatial size disagreeing with the metadata.
    """
    if elem_type != "tensor(float)":
        raise ModelContractError(f"input {name!r} must be tensor(float) (float32), got {elem_type}")
    if len(shape) != 4:
        raise ModelContractError(
            f"input {name!r} must be 4-D NCHW, got rank {len(shape)} shape {_shape_text(shape)}"
        )
    batch, channels, height, width = shape
    if isinstance(batch, int):
        raise ModelContractError(
            f"input {name!r} has a fixed batch size {batch}; the contract needs a dynamic batch"
        )
    if isinstance(channels, int) and channels != meta.num_channels:
        raise ModelContractError(
            f"input {name!r} has {channels} channel(s) but metadata curator.channels is "
            f"{meta.channels!r} ({meta.num_channels} channel(s))"
        )
    for dim, want, label in ((height, meta.input_size[0], "H"), (width, meta.input_size[1], "W")):
        if isinstance(dim, int) and dim != want:
            raise ModelContractError(
                f"input {name!r} shape {_shape_text(shape)} disagrees with metadata "
                f"curator.input_size {list(meta.input_size)} ({label})"
            )


def check_output(
    role: str, name: str, elem_type: str, shape: Sequence[Dim], width: int, width_key: str
) -> None:
    """Check one output (``embedding`` or ``logits``) against the contract.

    Args:
        role: ``"embedding"`` or ``"logits"``.
        name: the output's name in the graph.
        elem_type: onnxruntime's type string.
        shape: the declared shape.
        width: the expected second dimension (from the metadata).
        width_key: the metadata the width comes from, for messages.

    Raises:
        ModelContractError: not float32, not 2-D, or a static width other than ``width``.
    """
    label = role if role == name else f"{role} (graph output {name!r})"
    if elem_type != "tensor(float)":
        raise ModelContractError(f"output {label} must be tensor(float) (float32), got {elem_type}")
    if len(shape) != 2:
        raise ModelContractError(
            f"output {label} must be 2-D (N, width), got shape {_shape_text(shape)}"
        )
    if isinstance(shape[1], int) and shape[1] != width:
        raise ModelContractError(
            f"output {label} has width {shape[1]} but metadata {width_key} says {width}"
        )
