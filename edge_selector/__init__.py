"""The edge selector: runs on each camera device.

Computes embeddings and uncertainty with the ONNX model, keeps only informative, non-redundant
frames in a bounded SQLite buffer and uploads them when a link exists. It depends on ``curator``
and never on ``server``; its only contract with the server is :mod:`curator.wire`.

Modules:

- :mod:`edge_selector.cli`: ``edge-selector run`` and ``edge-selector status``
  (docs/edge-selector.md).
- :mod:`edge_selector.settings`: :class:`EdgeSettings` and :func:`load_settings` (flags >
  ``CURATOR_EDGE_*`` environment > TOML file > defaults).
- :mod:`edge_selector.run`: :func:`~edge_selector.run.run`, the decode, capture, upload and
  metrics threads of one process.
- :mod:`edge_selector.selector`: :class:`Selector`, the per-frame decision (gates, one inference
  call per batch, scores, the streaming budget, buffer writes) under a :class:`SelectionPolicy`;
  :class:`PreparedBatch`, :data:`DROP_REASONS`.
- :mod:`edge_selector.scoring`: :class:`QualityGates`, :class:`ValueModel`,
  :class:`FrameScores`.
- :mod:`edge_selector.novelty`: :class:`RecentEmbeddings`, novelty against the recently kept
  embeddings of one model version (exact, then a FAISS inverted file).
- :mod:`edge_selector.sync`: :class:`Uploader`, the buffer drained to the server most valuable
  first; :class:`SyncOutcome`, :class:`SyncCounters`, :class:`SyncAuthError` (from
  :mod:`~edge_selector.sync_outcomes`); the HTTP side is :mod:`~edge_selector.sync_http`.
- :mod:`edge_selector.backoff`: :class:`Backoff` (exponential, full jitter) and
  :class:`BandwidthCap` (a token bucket of bytes).
- :mod:`edge_selector.telemetry`: :class:`Telemetry`, the counters for heartbeats, Prometheus
  and the summary.
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
when :func:`encode_image` runs, httpx for the uploader, pydantic-settings for the settings;
onnxruntime and FAISS only when a model is opened or the novelty set is indexed).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edge_selector.backoff import Backoff, BandwidthCap
    from edge_selector.buffer import FrameBuffer
    from edge_selector.buffer_frames import BufferedFrame, KeptFrame
    from edge_selector.buffer_outcomes import AddOutcome, BufferStats, FrameTooLargeError
    from edge_selector.encode import EncodedImage, encode_image
    from edge_selector.models import ModelUpdater, UpdateOutcome
    from edge_selector.novelty import RecentEmbeddings
    from edge_selector.scoring import FrameScores, QualityGates, ValueModel
    from edge_selector.selector import DROP_REASONS, PreparedBatch, SelectionPolicy, Selector
    from edge_selector.settings import EdgeSettings, load_settings
    from edge_selector.sync import SyncAuthError, SyncCounters, SyncOutcome, Uploader
    from edge_selector.telemetry import Telemetry

__all__ = [
    "DROP_REASONS",
    "AddOutcome",
    "Backoff",
    "BandwidthCap",
    "BufferStats",
    "BufferedFrame",
    "EdgeSettings",
    "EncodedImage",
    "FrameBuffer",
    "FrameScores",
    "FrameTooLargeError",
    "KeptFrame",
    "ModelUpdater",
    "PreparedBatch",
    "QualityGates",
    "RecentEmbeddings",
    "SelectionPolicy",
    "Selector",
    "SyncAuthError",
    "SyncCounters",
    "SyncOutcome",
    "Telemetry",
    "UpdateOutcome",
    "Uploader",
    "ValueModel",
    "encode_image",
    "load_settings",
]

_HOMES = {
    "ModelUpdater": "edge_selector.models",
    "UpdateOutcome": "edge_selector.models",
    "AddOutcome": "edge_selector.buffer_outcomes",
    "Backoff": "edge_selector.backoff",
    "BandwidthCap": "edge_selector.backoff",
    "BufferStats": "edge_selector.buffer_outcomes",
    "BufferedFrame": "edge_selector.buffer_frames",
    "DROP_REASONS": "edge_selector.selector",
    "EdgeSettings": "edge_selector.settings",
    "EncodedImage": "edge_selector.encode",
    "FrameBuffer": "edge_selector.buffer",
    "FrameScores": "edge_selector.scoring",
    "FrameTooLargeError": "edge_selector.buffer_outcomes",
    "KeptFrame": "edge_selector.buffer_frames",
    "PreparedBatch": "edge_selector.selector",
    "QualityGates": "edge_selector.scoring",
    "RecentEmbeddings": "edge_selector.novelty",
    "SelectionPolicy": "edge_selector.selector",
    "Selector": "edge_selector.selector",
    "SyncAuthError": "edge_selector.sync",
    "SyncCounters": "edge_selector.sync",
    "SyncOutcome": "edge_selector.sync",
    "Telemetry": "edge_selector.telemetry",
    "Uploader": "edge_selector.sync",
    "ValueModel": "edge_selector.scoring",
    "encode_image": "edge_selector.encode",
    "load_settings": "edge_selector.settings",
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
