"""What the model registry keeps and hands out: :class:`StagedModel`, :class:`ModelEntry`,
:class:`RegisteredModel`; reading ``model_versions`` rows into them, and a version's warehouse
row."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

from curator.errors import InvalidInputError
from curator.wire import ModelInfo
from server.errors import NotFound

__all__ = [
    "COLUMNS",
    "WAREHOUSE_TABLE",
    "ModelEntry",
    "RegisteredModel",
    "StagedModel",
    "all_entries",
    "download_path",
    "entry_from_row",
    "find_entry",
    "insert_entry",
    "latest_promoted_entry",
    "require_entry",
    "warehouse_row",
]

WAREHOUSE_TABLE = "model_versions"
"""The warehouse table each registration and promotion change is enqueued to."""
COLUMNS = (
    "model_version, sha256, size_bytes, blob_key, parent_version, snapshot_key, metrics,"
    " created_at, promoted, promotion_seq, gate_reason"
)
"""The ``model_versions`` columns, in the order :func:`entry_from_row` reads them."""


def download_path(model_version: str) -> str:
    """The server path of a version's ONNX file: ``/v1/models/<version>/file`` (quoted)."""
    return f"/v1/models/{quote(model_version, safe='')}/file"


@dataclass(frozen=True)
class StagedModel:
    """An ONNX file that passed the contract and is in the blob store, not yet registered."""

    model_version: str
    sha256: str
    size_bytes: int
    blob_key: str
    class_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelEntry:
    """A stored version: what devices see (``info``) and the registry's own columns."""

    info: ModelInfo
    blob_key: str
    promotion_seq: int | None
    gate_reason: str | None


@dataclass(frozen=True)
class RegisteredModel:
    """What :meth:`ModelRegistry.add` did: the stored version, and whether it is new."""

    entry: ModelEntry
    created: bool

    @property
    def info(self) -> ModelInfo:
        return self.entry.info


def entry_from_row(row: tuple[Any, ...]) -> ModelEntry:
    """The entry of a ``model_versions`` row selected as :data:`COLUMNS`."""
    version, sha, size, key, parent, snapshot, metrics, created, promoted, seq, reason = row
    info = ModelInfo(
        model_version=version,
        sha256=sha,
        size_bytes=size,
        created_at=datetime.fromisoformat(created),
        parent_version=parent,
        snapshot_key=snapshot,
        metrics=json.loads(metrics),
        promoted=bool(promoted),
        download_path=download_path(version),
    )
    return ModelEntry(info, key, seq, reason)


def warehouse_row(info: ModelInfo) -> dict[str, Any]:
    """The row of the warehouse table ``model_versions``
    (:data:`server.warehouse.tables.MODEL_VERSIONS`)."""
    return {
        "model_version": info.model_version,
        "sha256": info.sha256,
        "parent_version": info.parent_version,
        "snapshot_key": info.snapshot_key,
        "metrics": dict(info.metrics),
        "promoted": info.promoted,
        "created_at": info.created_at,
    }


def find_entry(c: sqlite3.Connection, model_version: str) -> ModelEntry | None:
    """The stored version ``model_version``, or None.

    Raises:
        InvalidInputError: ``model_version`` is not a str.
    """
    if not isinstance(model_version, str):
        raise InvalidInputError(f"model_version must be a str, got {model_version!r}")
    row = c.execute(
        f"SELECT {COLUMNS} FROM model_versions WHERE model_version = ?", (model_version,)
    ).fetchone()
    return None if row is None else entry_from_row(row)


def require_entry(c: sqlite3.Connection, model_version: str) -> ModelEntry:
    """The stored version ``model_version``.

    Raises:
        NotFound: no such version.
        InvalidInputError: ``model_version`` is not a str.
    """
    entry = find_entry(c, model_version)
    if entry is None:
        raise NotFound(f"no model version {model_version!r}")
    return entry


def insert_entry(
    c: sqlite3.Connection,
    staged: StagedModel,
    parent_version: str | None,
    snapshot_key: str | None,
    metrics: dict[str, float],
    created_at: str,
) -> ModelEntry:
    """Store a new, not promoted version of ``staged`` (fields already checked); the entry.

    Raises:
        sqlite3.IntegrityError: the version or the snapshot is stored already.
    """
    c.execute(
        f"INSERT INTO model_versions ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, NULL, NULL)",
        (
            staged.model_version, staged.sha256, staged.size_bytes, staged.blob_key,
            parent_version, snapshot_key, json.dumps(metrics, sort_keys=True), created_at,
        ),
    )  # fmt: skip
    return require_entry(c, staged.model_version)


def all_entries(c: sqlite3.Connection) -> list[ModelEntry]:
    """Every stored version, oldest first."""
    rows = c.execute(f"SELECT {COLUMNS} FROM model_versions ORDER BY created_at, rowid")
    return [entry_from_row(r) for r in rows]


def latest_promoted_entry(c: sqlite3.Connection) -> ModelEntry | None:
    """The promoted version promoted last, or None when none is promoted."""
    row = c.execute(
        f"SELECT {COLUMNS} FROM model_versions WHERE promoted = 1"
        " ORDER BY promotion_seq DESC LIMIT 1"
    ).fetchone()
    return None if row is None else entry_from_row(row)
