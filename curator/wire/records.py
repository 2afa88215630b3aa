"""The record of one kept frame: :class:`FrameMeta` and :class:`FrameRecord`.

Validation here is structural and whole-record: types, ranges, charsets, timezone-aware times,
finite scores, no unknown fields. Content checks that the server answers per frame (the image
hash, the embedding's values and dimension, probabilities summing to 1) live in
:func:`curator.wire.frame_problems`, so one bad frame never sinks a batch.
"""

from __future__ import annotations

import hashlib
import operator
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

import numpy as np
import numpy.typing as npt
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from curator.errors import WireFormatError

__all__ = ["SCHEMA_VERSION", "FrameMeta", "FrameRecord", "ImageFormat"]

SCHEMA_VERSION = 1
"""The record schema this build reads and writes; see docs/wire.md for what bumps it."""

ImageFormat = Literal["jpeg", "png"]

_ID_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"
_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$"
_TEXT_PATTERN = r"^[^\x00-\x1f\x7f]{1,128}$"
_MAX_NAMED_VALUES = 64
_MAX_SIDE = 65_535
_LE_F32 = np.dtype("<f4")
_T = TypeVar("_T")

_Id = Annotated[str, Field(strict=True, pattern=_ID_PATTERN)]
_Name = Annotated[str, Field(strict=True, pattern=_NAME_PATTERN)]
_Text = Annotated[str, Field(strict=True, pattern=_TEXT_PATTERN)]
_Finite = Annotated[StrictFloat, Field(allow_inf_nan=False)]
_Side = Annotated[StrictInt, Field(gt=0, le=_MAX_SIDE)]


def _no_timestamps(value: Any) -> Any:
    if isinstance(value, int | float):  # pydantic would read a number as a Unix time
        raise ValueError("expected a datetime or an ISO 8601 string with a UTC offset")
    return value


def _to_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:  # a valid date that leaves the datetime range in UTC
        raise ValueError(f"captured_at {value.isoformat()} is out of range in UTC") from exc


def _raw_bytes(value: Any, info: ValidationInfo) -> Any:
    """Bytes-likes become bytes; text is refused except as base64 in JSON mode."""
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str) and info.mode == "python":
        raise ValueError("expected bytes, got str")
    return value


def _embedding_bytes(value: Any, info: ValidationInfo) -> Any:
    """A 1-D real array or sequence becomes little-endian float32 bytes."""
    if not isinstance(value, np.ndarray | list | tuple):
        return _raw_bytes(value, info)
    arr = np.asarray(value)
    if arr.dtype.kind not in "iuf" or arr.ndim != 1:
        raise ValueError(f"embedding must be a 1-D real array, got {arr.dtype} {arr.shape}")
    with np.errstate(over="ignore"):  # out-of-range floats become inf; frame_problems says so
        return arr.astype(_LE_F32).tobytes()


def _check_f32_length(raw: bytes) -> bytes:
    if not raw or len(raw) % 4:
        raise ValueError(f"embedding must be a non-zero multiple of 4 bytes, got {len(raw)}")
    return raw


_EmbeddingBytes = Annotated[
    bytes, BeforeValidator(_embedding_bytes), AfterValidator(_check_f32_length)
]
_ImageBytes = Annotated[bytes, BeforeValidator(_raw_bytes), Field(min_length=1)]


class FrameMeta(BaseModel):
    """Everything known about a kept frame except its embedding and image bytes."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    frame_id: str = Field(
        strict=True,
        pattern=r"^[0-9a-f]{64}$",
        description="sha256 of the encoded image bytes, 64 lowercase hex digits.",
    )
    device_id: _Id = Field(description="The uploading device, [A-Za-z0-9._-]{1,64}.")
    device_seq: StrictInt = Field(
        ge=1,
        le=2**63 - 1,
        description="Per-device sequence number: starts at 1, increases, never reused.",
    )
    captured_at: Annotated[
        AwareDatetime, BeforeValidator(_no_timestamps), AfterValidator(_to_utc)
    ] = Field(description="When the frame was captured; timezone-aware, normalised to UTC.")
    model_version: _Text = Field(description="Version of the model that scored the frame.")
    scores: dict[_Name, _Finite] = Field(
        max_length=_MAX_NAMED_VALUES,
        description="Named scores at decision time (e.g. entropy, novelty, value); finite.",
    )
    quality: dict[_Name, _Finite] = Field(
        default_factory=dict,
        max_length=_MAX_NAMED_VALUES,
        description="Named image quality measures (e.g. blur, exposure); finite.",
    )
    predicted_class: Annotated[StrictInt, Field(ge=0)] | None = Field(
        default=None,
        description="Index of the predicted class in the model's class list; set with "
        "class_probabilities when the model has logits.",
    )
    class_probabilities: tuple[Annotated[_Finite, Field(ge=0.0, le=1.0)], ...] | None = Field(
        default=None,
        min_length=2,
        description="Class probabilities in the model's class order; sum to 1.",
    )
    width: _Side = Field(description="Image width in pixels.")
    height: _Side = Field(description="Image height in pixels.")
    image_format: ImageFormat = Field(description='Encoding of the image bytes: "jpeg" or "png".')
    keep_reason: _Name = Field(
        description="Why the edge kept the frame, e.g. 'value_above_threshold'."
    )
    keep_value: _Finite | None = Field(
        default=None, description="The value compared at decision time, if any."
    )
    keep_threshold: _Finite | None = Field(
        default=None, description="The threshold it was compared against, if any."
    )

    @model_validator(mode="after")
    def _prediction_is_complete(self) -> FrameMeta:
        probs = self.class_probabilities
        if (self.predicted_class is None) != (probs is None):
            raise ValueError("predicted_class and class_probabilities come together or not at all")
        if (
            probs is not None
            and self.predicted_class is not None
            and self.predicted_class >= len(probs)
        ):
            raise ValueError(
                f"predicted_class {self.predicted_class} is out of range for {len(probs)} classes"
            )
        return self


class FrameRecord(FrameMeta):
    """A kept frame as uploaded: its metadata, embedding and encoded image.

    ``embedding`` holds the vector as little-endian float32 bytes; pass a 1-D array (cast to
    float32) or those bytes, and read it back with :meth:`embedding_array`. Build records with
    :meth:`from_image`, which computes ``frame_id``.
    """

    model_config = ConfigDict(ser_json_bytes="base64", val_json_bytes="base64")

    embedding: _EmbeddingBytes = Field(
        repr=False, description="The embedding as little-endian float32 bytes (D * 4 bytes)."
    )
    image: _ImageBytes = Field(repr=False, description="The encoded image (JPEG or PNG) bytes.")

    @property
    def embedding_dim(self) -> int:
        """Dimension ``D`` of the embedding."""
        return len(self.embedding) // 4

    def embedding_array(self) -> npt.NDArray[np.float32]:
        """The embedding as a read-only ``(D,)`` float32 array (bit-identical to what was sent)."""
        return np.frombuffer(self.embedding, dtype=_LE_F32).astype(np.float32, copy=False)

    @classmethod
    def from_image(
        cls,
        image: bytes,
        embedding: npt.ArrayLike,
        *,
        device_id: str,
        device_seq: int,
        captured_at: datetime,
        model_version: str,
        width: int,
        height: int,
        scores: dict[str, float],
        keep_reason: str,
        image_format: ImageFormat = "jpeg",
        quality: dict[str, float] | None = None,
        predicted_class: int | None = None,
        class_probabilities: npt.ArrayLike | None = None,
        keep_value: float | None = None,
        keep_threshold: float | None = None,
    ) -> FrameRecord:
        """A record for ``image`` with ``frame_id = sha256(image)``.

        Args:
            image: the encoded image bytes.
            embedding: ``(D,)`` embedding; cast to float32.
            class_probabilities: ``(K,)`` probabilities, or None for an embedding-only model.
            The other arguments are the fields of the same name.

        Raises:
            WireFormatError: a field is invalid; the message names it.
        """
        try:
            fields: dict[str, Any] = {
                "frame_id": hashlib.sha256(image).hexdigest(),
                "device_id": device_id,
                "device_seq": operator.index(device_seq),
                "captured_at": captured_at,
                "model_version": model_version,
                "scores": _floats(scores),
                "quality": _floats(quality or {}),
                "predicted_class": _maybe(operator.index, predicted_class),
                "class_probabilities": _maybe(_float_tuple, class_probabilities),
                "width": operator.index(width),
                "height": operator.index(height),
                "image_format": image_format,
                "keep_reason": keep_reason,
                "keep_value": _maybe(float, keep_value),
                "keep_threshold": _maybe(float, keep_threshold),
                "embedding": embedding,
                "image": image,
            }
            return cls.model_validate(fields)
        except ValidationError as exc:
            raise WireFormatError(
                f"invalid frame record: {_describe_validation_error(exc)}"
            ) from exc
        except (TypeError, ValueError) as exc:
            raise WireFormatError(f"invalid frame record: {exc}") from exc


def _floats(named: dict[str, Any]) -> dict[str, float]:
    """Numpy scalars become Python floats (pydantic's strict floats accept only those)."""
    return {name: float(value) for name, value in named.items()}


def _float_tuple(values: npt.ArrayLike) -> tuple[float, ...]:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"class_probabilities must be 1-D, got shape {arr.shape}")
    return tuple(arr.tolist())


def _maybe(convert: Callable[[Any], _T], value: Any) -> _T | None:
    return None if value is None else convert(value)


def _describe_validation_error(exc: ValidationError, limit: int = 3) -> str:
    """``"field.path: message"`` for the first ``limit`` errors of ``exc``, on one line."""
    errors = exc.errors(include_url=False)
    parts = [
        f"{'.'.join(str(p) for p in e['loc']) or '(record)'}: {e['msg']}" for e in errors[:limit]
    ]
    more = len(errors) - limit
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")
