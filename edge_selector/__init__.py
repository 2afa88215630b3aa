"""The edge selector: runs on each camera device.

Computes embeddings and uncertainty with the ONNX model, keeps only informative, non-redundant
frames in a bounded SQLite buffer and uploads them when a link exists. It depends on ``curator``
and never on ``server``; its only contract with the server is :mod:`curator.wire`.

Modules:

- :mod:`edge_selector.encode`: :func:`encode_image`, a kept frame as JPEG or PNG bytes.
- :mod:`edge_selector.buffer`: :class:`FrameBuffer`, the durable priority queue of kept frames
  between the selector and the uploader (docs/edge-buffer.md). Its parts:
  :mod:`~edge_selector.buffer_frames` (:class:`KeptFrame` in, :class:`BufferedFrame` out),
  :mod:`~edge_selector.buffer_outcomes` (:class:`AddOutcome`, :class:`BufferStats`,
  :class:`FrameTooLargeError`), :mod:`~edge_selector.buffer_store` (the SQLite file's writes),
  :mod:`~edge_selector.buffer_evict` (making room, a full disk),
  :mod:`~edge_selector.buffer_space` (the byte cap) and :mod:`~edge_selector.buffer_schema`
  (connection settings, migrations).

The names below are exported lazily: ``import edge_selector`` loads nothing but this file, and
the first use of a name imports its module (sqlite-utils and pydantic for the buffer, Pillow only
when :func:`encode_image` runs).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edge_selector.buffer import FrameBuffer
    from edge_selector.buffer_frames import BufferedFrame, KeptFrame
    from edge_selector.buffer_outcomes import AddOutcome, BufferStats, FrameTooLargeError
    from edge_selector.encode import EncodedImage, encode_image

__all__ = [
    "AddOutcome",
    "BufferStats",
    "BufferedFrame",
    "EncodedImage",
    "FrameBuffer",
    "FrameTooLargeError",
    "KeptFrame",
    "encode_image",
]

_HOMES = {
    "AddOutcome": "edge_selector.buffer_outcomes",
    "BufferStats": "edge_selector.buffer_outcomes",
    "BufferedFrame": "edge_selector.buffer_frames",
    "EncodedImage": "edge_selector.encode",
    "FrameBuffer": "edge_selector.buffer",
    "FrameTooLargeError": "edge_selector.buffer_outcomes",
    "KeptFrame": "edge_selector.buffer_frames",
    "encode_image": "edge_selector.encode",
}


def __getattr__(name: str) -> Any:
    """Import an exported name's module on first use (PEP 562)."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'edge_selector' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
