"""The binary body of an upload, media type ``application/vnd.curator.batch``.

Layout (all integers little-endian; docs/wire.md has the full table)::

    0      4 bytes   magic b"CURB"
    4      u16       framing version (FRAMING_VERSION)
    6      u32       header length H
    10     H bytes   header: UTF-8 JSON, the batch metadata and per frame its metadata and the
                     (offset, length) of its embedding and image within the payload
    10+H   P bytes   payload: each frame's embedding (D float32) then its encoded image

Decoding checks the whole body and raises :class:`~curator.errors.WireFormatError` on anything
that breaks it; limits are checked before anything is copied. Per-frame content problems are
left to :func:`curator.wire.frame_problems`.
"""

from __future__ import annotations

import json
import struct
from itertools import pairwise
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, model_validator

from curator.errors import WireFormatError
from curator.wire.batch import BatchUpload, _check_batch_frames, _SchemaVersion
from curator.wire.records import (
    SCHEMA_VERSION,
    FrameMeta,
    FrameRecord,
    _describe_validation_error,
    _Id,
)

__all__ = [
    "FRAMING_VERSION",
    "MAGIC",
    "MAX_EMBEDDING_DIM",
    "MAX_FRAMES",
    "MAX_HEADER_BYTES",
    "MAX_IMAGE_BYTES_HARD",
    "MEDIA_TYPE",
    "batch_header_schema",
    "decode_batch",
    "encode_batch",
]

MEDIA_TYPE = "application/vnd.curator.batch"
MAGIC = b"CURB"
FRAMING_VERSION = 1
MAX_FRAMES = 1024
MAX_EMBEDDING_DIM = 16_384
MAX_IMAGE_BYTES_HARD = 64 * 2**20
MAX_HEADER_BYTES = 16 * 2**20

_PREAMBLE = struct.Struct("<4sHI")


class _Slice(BaseModel):
    """Where a blob lies in the payload section."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    offset: StrictInt = Field(ge=0, description="Start, in bytes from the payload's start.")
    length: StrictInt = Field(ge=1, description="Length in bytes.")


class _FrameEntry(FrameMeta):
    """A frame's entry in the header: its metadata and where its blobs are."""

    embedding: _Slice = Field(description="Little-endian float32 embedding, length D * 4.")
    image: _Slice = Field(description="The encoded image bytes.")


class _BatchHeader(BaseModel):
    """The JSON header of a batch body."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: _SchemaVersion = Field(description="Record schema version.")
    batch_id: _Id = Field(description="Id the device gives this upload.")
    device_id: _Id = Field(description="The uploading device; every frame must carry it.")
    frames: tuple[_FrameEntry, ...] = Field(min_length=1, description="The frames, in order.")

    @model_validator(mode="after")
    def _frames_belong(self) -> _BatchHeader:
        _check_batch_frames(self.device_id, self.frames)
        return self


def batch_header_schema() -> dict[str, Any]:
    """JSON schema of the header, for the server's OpenAPI description of the body."""
    return _BatchHeader.model_json_schema()


def encode_batch(batch: BatchUpload) -> bytes:
    """The binary body for ``batch``.

    Raises:
        WireFormatError: the header would exceed :data:`MAX_HEADER_BYTES`.
    """
    blobs: list[bytes] = []
    entries: list[dict[str, Any]] = []
    offset = 0
    for frame in batch.frames:
        entry = frame.model_dump(mode="json", exclude={"embedding", "image"})
        for name, blob in (("embedding", frame.embedding), ("image", frame.image)):
            entry[name] = {"offset": offset, "length": len(blob)}
            blobs.append(blob)
            offset += len(blob)
        entries.append(entry)
    header = {
        "schema_version": batch.schema_version,
        "batch_id": batch.batch_id,
        "device_id": batch.device_id,
        "frames": entries,
    }
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    head = text.encode("utf-8")
    if len(head) > MAX_HEADER_BYTES:
        raise WireFormatError(
            f"header is {len(head)} bytes, over the {MAX_HEADER_BYTES}-byte limit; "
            "send fewer frames per batch"
        )
    return b"".join([_PREAMBLE.pack(MAGIC, FRAMING_VERSION, len(head)), head, *blobs])


def decode_batch(
    data: bytes | bytearray | memoryview,
    *,
    max_frames: int = MAX_FRAMES,
    max_image_bytes: int = MAX_IMAGE_BYTES_HARD,
    max_embedding_dim: int = MAX_EMBEDDING_DIM,
    max_header_bytes: int = MAX_HEADER_BYTES,
) -> BatchUpload:
    """Parse and validate a binary batch body.

    Args:
        data: the request body.
        max_frames: most frames accepted in one body.
        max_image_bytes: largest single image accepted at all (a hard memory guard; the policy
            limit is :func:`curator.wire.frame_problems`'s, which rejects one frame only).
        max_embedding_dim: largest embedding dimension accepted.
        max_header_bytes: largest JSON header accepted.

    Returns:
        The validated batch, frames in body order.

    Raises:
        WireFormatError: bad magic, unsupported framing or schema version, truncated body,
            header too large or not JSON, too many frames, a field failing validation (the
            message names it), blobs outside the payload, overlapping or oversized, or bytes
            no frame refers to.
        TypeError: ``data`` is not a bytes-like object.
    """
    header, payload = _read_header(memoryview(data).cast("B"), max_header_bytes)
    frames = header.get("frames")
    if isinstance(frames, list) and len(frames) > max_frames:
        raise WireFormatError(f"too many frames: {len(frames)}, the limit is {max_frames}")
    try:
        parsed = _BatchHeader.model_validate(header)
    except ValidationError as exc:
        raise WireFormatError(f"invalid batch header: {_describe_validation_error(exc)}") from exc
    _check_layout(parsed.frames, len(payload), max_image_bytes, max_embedding_dim)
    records = tuple(
        FrameRecord.model_construct(
            **{name: getattr(entry, name) for name in FrameMeta.model_fields},
            embedding=_cut(payload, entry.embedding),
            image=_cut(payload, entry.image),
        )
        for entry in parsed.frames
    )
    return BatchUpload.model_construct(
        schema_version=parsed.schema_version,
        batch_id=parsed.batch_id,
        device_id=parsed.device_id,
        frames=records,
    )


def _read_header(view: memoryview, max_header_bytes: int) -> tuple[dict[str, Any], memoryview]:
    """The header parsed (a dict with a supported schema version) and the payload section."""
    if bytes(view[:4]) != MAGIC[: min(4, len(view))]:
        raise WireFormatError(f"bad magic {bytes(view[:4])!r}; a batch body starts with {MAGIC!r}")
    if len(view) < _PREAMBLE.size:
        raise WireFormatError(
            f"truncated body: {len(view)} bytes, shorter than the {_PREAMBLE.size}-byte preamble"
        )
    _, framing, head_len = _PREAMBLE.unpack_from(view)
    if framing != FRAMING_VERSION:
        raise WireFormatError(
            f"unsupported framing version {framing}; this build reads framing version "
            f"{FRAMING_VERSION}"
        )
    if head_len > max_header_bytes:
        raise WireFormatError(
            f"header too large: {head_len} bytes, the limit is {max_header_bytes}"
        )
    if _PREAMBLE.size + head_len > len(view):
        raise WireFormatError(
            f"truncated body: the header says {head_len} bytes but only "
            f"{len(view) - _PREAMBLE.size} follow the preamble"
        )
    payload_start = _PREAMBLE.size + head_len
    raw = view[_PREAMBLE.size : payload_start]
    try:
        header = json.loads(str(raw, "utf-8"), object_pairs_hook=_no_duplicate_keys)
    except UnicodeDecodeError as exc:
        raise WireFormatError(f"header is not valid UTF-8: {exc}") from exc
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        raise WireFormatError(f"header is not valid JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise WireFormatError(f"header must be a JSON object, got {type(header).__name__}")
    if "schema_version" not in header:
        raise WireFormatError("header has no schema_version")
    version = header["schema_version"]
    if version != SCHEMA_VERSION or isinstance(version, bool):
        raise WireFormatError(
            f"unsupported schema version {version!r}; this build speaks schema version "
            f"{SCHEMA_VERSION}"
        )
    return header, view[payload_start:]


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError(f"duplicate key {key!r}")
        obj[key] = value
    return obj


def _check_layout(
    frames: tuple[_FrameEntry, ...], payload_len: int, max_image: int, max_dim: int
) -> None:
    """Blobs have legal sizes, lie inside the payload, do not overlap and cover it exactly."""
    spans: list[tuple[int, int, str]] = []
    for i, frame in enumerate(frames):
        emb, img = frame.embedding, frame.image
        if emb.length % 4:
            raise WireFormatError(
                f"frames[{i}].embedding length {emb.length} is not a multiple of 4 (float32)"
            )
        if emb.length // 4 > max_dim:
            raise WireFormatError(
                f"frames[{i}].embedding has dimension {emb.length // 4}, the limit is {max_dim}"
            )
        if img.length > max_image:
            raise WireFormatError(
                f"frames[{i}].image is {img.length} bytes, the limit is {max_image}"
            )
        spans += [
            (emb.offset, emb.length, f"frames[{i}].embedding"),
            (img.offset, img.length, f"frames[{i}].image"),
        ]
    spans.sort()
    end = max(offset + length for offset, length, _ in spans)
    if end > payload_len:
        raise WireFormatError(
            f"truncated body: the header refers to {end} payload bytes but only {payload_len} "
            "are present"
        )
    for (a_off, a_len, a), (b_off, _, b) in pairwise(spans):
        if b_off < a_off + a_len:
            raise WireFormatError(f"{a} and {b} overlap in the payload")
    used = sum(length for _, length, _ in spans)
    if used != payload_len:
        raise WireFormatError(
            f"payload holds {payload_len - used} bytes no frame refers to (trailing garbage?)"
        )


def _cut(payload: memoryview, where: _Slice) -> bytes:
    return bytes(payload[where.offset : where.offset + where.length])
