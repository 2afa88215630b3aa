"""The model registry: :class:`ModelRegistry` over the catalog's ``model_versions`` table.

A model version is named by the ONNX file itself (its ``curator.model_version`` metadata), so
registering is idempotent on the bytes: the same file again returns the stored version and
writes nothing; another file under a registered version, or for a dataset snapshot that already
yielded a version, is a :class:`RegistryConflict`. Files are checked against the model contract
with :class:`curator.inference.OnnxModel` (and run once on a zero batch) before anything is
stored, and kept in the blob store under their content-addressed key (``ab/cd/<sha256>.onnx``).

Promotion is a flag plus an order: every promotion takes the next ``promotion_seq``, and
:meth:`ModelRegistry.latest_promoted` is the promoted version promoted last, so promoting an
older version rolls back to it and demoting the newest falls back to the one before. Each
registration and each change of the flag enqueues the version's warehouse row
(``model_versions``) in the same transaction. The table comes with the catalog's migrations
(``catalog.0004_model_registry``): open a :class:`~server.catalog.Catalog` on the file first.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import math
import re
import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import numpy as np

from curator.errors import InvalidInputError
from curator.inference import OnnxModel
from curator.wire import ModelInfo
from server.blobs import BlobStore
from server.catalog.answers import iso
from server.catalog.store import Catalog
from server.db import atomic
from server.errors import NotFound, Unavailable
from server.labeling.classes import register_class_names

if TYPE_CHECKING:
    from server.warehouse.outbox import Outbox

__all__ = [
    "MAX_METRICS",
    "ModelEntry",
    "ModelRegistry",
    "RegisteredModel",
    "RegistryConflict",
    "StagedModel",
    "check_metrics",
    "download_path",
]

WAREHOUSE_TABLE = "model_versions"
MAX_METRICS = 64
_VERSION = re.compile(r"[^\x00-\x1f\x7f/\\]{1,128}")
_SNAPSHOT = re.compile(r"[^\x00-\x1f\x7f]{1,200}")
_METRIC = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")
_COLUMNS = (
    "model_version, sha256, size_bytes, blob_key, parent_version, snapshot_key, metrics,"
    " created_at, promoted, promotion_seq, gate_reason"
)


class RegistryConflict(InvalidInputError):
    """A version or snapshot already registered with other bytes (answered 409 over HTTP)."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


def download_path(model_version: str) -> str:
    """The server path of a version's ONNX file: ``/v1/models/<version>/file`` (quoted)."""
    return f"/v1/models/{quote(model_version, safe='')}/file"


def check_metrics(metrics: Mapping[str, float] | None) -> dict[str, float]:
    """``metrics`` as a plain dict of finite floats, checked.

    Raises:
        InvalidInputError: not a mapping, more than :data:`MAX_METRICS` entries, a name that is
            not 1-64 characters ``[A-Za-z_][A-Za-z0-9_.-]*``, or a value that is not a finite
            real number (bools refused).
    """
    if metrics is None:
        return {}
    if not isinstance(metrics, Mapping):
        raise InvalidInputError(f"metrics must be a mapping of name to number, got {metrics!r}")
    if len(metrics) > MAX_METRICS:
        raise InvalidInputError(f"at most {MAX_METRICS} metrics, got {len(metrics)}")
    clean: dict[str, float] = {}
    for name, value in metrics.items():
        if not isinstance(name, str) or not _METRIC.fullmatch(name):
            raise InvalidInputError(
                f"metric name must be 1-64 characters [A-Za-z_][A-Za-z0-9_.-]*, got {name!r}"
            )
        if isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.number):
            raise InvalidInputError(f"metric {name!r} must be a number, got {value!r}")
        number = float(value)
        if not math.isfinite(number):
            raise InvalidInputError(f"metric {name!r} must be finite, got {value!r}")
        clean[name] = number
    return clean


def _check_version(value: str, name: str) -> str:
    if not isinstance(value, str) or not _VERSION.fullmatch(value):
        raise InvalidInputError(
            f"{name} must be 1-128 printable characters without '/' or '\\', got {value!r}"
        )
    return value


def _check_snapshot(value: str | None) -> str | None:
    if value is not None and (not isinstance(value, str) or not _SNAPSHOT.fullmatch(value)):
        raise InvalidInputError(f"snapshot_key must be 1-200 printable characters, got {value!r}")
    return value


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


class ModelRegistry:
    """Model versions in the catalog's file, their files in the blob store.

    Cheap to build (it opens nothing and runs no migration).

    Args:
        catalog: the open catalog whose file holds ``model_versions``.
        blobs: where the ONNX files are kept.
        outbox: the warehouse outbox on the same file; each change enqueues the version's
            ``model_versions`` row in its transaction. None: the catalog only (tests, tools).
        clock: the time stamped as ``created_at`` (timezone-aware).
    """

    def __init__(
        self,
        catalog: Catalog,
        blobs: BlobStore,
        outbox: Outbox | None = None,
        *,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.catalog = catalog
        self.blobs = blobs
        self.outbox = outbox
        self._clock = clock

    def stage(self, onnx_bytes: bytes | bytearray | memoryview) -> StagedModel:
        """Check ``onnx_bytes`` against the model contract and put them in the blob store.

        The model is opened with :class:`~curator.inference.OnnxModel` and run once on a zero
        batch of one, so a model whose outputs disagree with its metadata is refused too. The
        file is stored under its content-addressed key; a staged file never registered is
        harmless (the next stage of the same bytes finds it).

        Raises:
            InvalidInputError: ``onnx_bytes`` is not bytes, or its model version is not 1-128
                printable characters without ``/`` or ``\\``.
            ModelContractError: not an ONNX model, or one that breaks the contract.
            MissingDependencyError: onnxruntime is not installed.
        """
        if not isinstance(onnx_bytes, bytes | bytearray | memoryview):
            raise InvalidInputError(f"onnx_bytes must be bytes, got {type(onnx_bytes).__name__}")
        data = bytes(onnx_bytes)
        model = OnnxModel(data, intra_op_threads=1)
        c, (h, w) = model.metadata.num_channels, model.input_size
        model.run(np.zeros((1, c, h, w), np.float32))  # checks output shapes vs. metadata
        version = _check_version(model.model_version, "curator.model_version")
        key = self.blobs.put(data, "onnx")
        digest = hashlib.sha256(data).hexdigest()
        return StagedModel(version, digest, len(data), key, model.class_names)

    def register(
        self,
        onnx_bytes: bytes | bytearray | memoryview | StagedModel,
        *,
        parent_version: str | None = None,
        snapshot_key: str | None = None,
        metrics: Mapping[str, float] | None = None,
        conn: sqlite3.Connection | None = None,
    ) -> ModelInfo:
        """Register a model file; :meth:`add` without the ``created`` flag."""
        return self.add(
            onnx_bytes,
            parent_version=parent_version,
            snapshot_key=snapshot_key,
            metrics=metrics,
            conn=conn,
        ).info

    def add(
        self,
        onnx_bytes: bytes | bytearray | memoryview | StagedModel,
        *,
        parent_version: str | None = None,
        snapshot_key: str | None = None,
        metrics: Mapping[str, float] | None = None,
        conn: sqlite3.Connection | None = None,
    ) -> RegisteredModel:
        """Register a model file (not promoted), or return it if these bytes are registered.

        The same bytes again return the stored version as stored (its first parent, snapshot
        and metrics) with ``created=False`` and write nothing.

        Args:
            onnx_bytes: the ONNX file, or a :class:`StagedModel` from :meth:`stage`.
            parent_version: the version it was fine-tuned from (not required to be registered).
            snapshot_key: the dataset snapshot it was trained on; one version per snapshot.
            metrics: held-out evaluation metrics, e.g. ``{"accuracy": 0.91}``.
            conn: a connection in an open transaction (:meth:`Catalog.atomic`) to join.

        Raises:
            ModelContractError: the bytes break the model contract (nothing stored).
            RegistryConflict: the version, or the snapshot, is registered with other bytes.
            InvalidInputError: a malformed parent, snapshot key (1-200 characters) or metrics,
                or a parent equal to the version.
        """
        parent = (
            None if parent_version is None else _check_version(parent_version, "parent_version")
        )
        snapshot = _check_snapshot(snapshot_key)
        clean = check_metrics(metrics)
        staged = onnx_bytes if isinstance(onnx_bytes, StagedModel) else self.stage(onnx_bytes)
        if parent == staged.model_version:
            raise InvalidInputError(f"model {parent!r} cannot be its own parent_version")
        with atomic(conn or self.catalog.db.connection) as c:
            stored = self._get(c, staged.model_version)
            if stored is not None:
                if stored.info.sha256 != staged.sha256:
                    raise RegistryConflict(
                        f"model version {staged.model_version!r} is registered with other bytes "
                        f"(sha256 {stored.info.sha256}, not {staged.sha256})"
                    )
                return RegisteredModel(stored, created=False)
            if snapshot is not None:
                row = c.execute(
                    "SELECT model_version FROM model_versions WHERE snapshot_key = ?", (snapshot,)
                ).fetchone()
                if row is not None:
                    raise RegistryConflict(
                        f"snapshot {snapshot!r} already yielded model version {row[0]!r}; "
                        "one model version per snapshot"
                    )
            created_at = iso(self._clock(), "clock()")
            c.execute(
                f"INSERT INTO model_versions ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0,"
                " NULL, NULL)",
                (
                    staged.model_version, staged.sha256, staged.size_bytes, staged.blob_key,
                    parent, snapshot, json.dumps(clean, sort_keys=True), created_at,
                ),
            )  # fmt: skip
            entry = self._require(c, staged.model_version)
            self._log(c, entry)
            if len(staged.class_names) >= 2:  # what labelers choose from for its frames
                register_class_names(c, staged.model_version, staged.class_names, self._clock())
        return RegisteredModel(entry, created=True)

    def get(self, model_version: str) -> ModelInfo:
        """The registered version ``model_version``.

        Raises:
            NotFound: no such version.
        """
        return self.entry(model_version).info

    def entry(self, model_version: str) -> ModelEntry:
        """The stored version with its blob key, promotion order and last decision.

        Raises:
            NotFound: no such version.
        """
        return self._require(self.catalog.db.connection, model_version)

    def list(self) -> builtins.list[ModelInfo]:
        """Every registered version, oldest first."""
        rows = self.catalog.db.connection.execute(
            f"SELECT {_COLUMNS} FROM model_versions ORDER BY created_at, rowid"
        )
        return [_entry(r).info for r in rows]

    def latest_promoted(self, *, conn: sqlite3.Connection | None = None) -> ModelInfo | None:
        """The promoted version promoted last, or None when none is promoted."""
        c = conn or self.catalog.db.connection
        row = c.execute(
            f"SELECT {_COLUMNS} FROM model_versions WHERE promoted = 1"
            " ORDER BY promotion_seq DESC LIMIT 1"
        ).fetchone()
        return None if row is None else _entry(row).info

    def promote(
        self,
        model_version: str,
        *,
        reason: str = "promoted on request",
        conn: sqlite3.Connection | None = None,
    ) -> ModelInfo:
        """Make ``model_version`` the latest promoted version (devices are offered it).

        Promoting the current latest changes nothing; promoting an older version makes it the
        latest again (a rollback). ``reason`` is stored as the version's last decision.

        Raises:
            NotFound: no such version.
        """
        with atomic(conn or self.catalog.db.connection) as c:
            entry = self._require(c, model_version)
            latest = self.latest_promoted(conn=c)
            if latest is not None and latest.model_version == model_version:
                return entry.info
            c.execute(
                "UPDATE model_versions SET promoted = 1, gate_reason = ?, promotion_seq ="
                " (SELECT coalesce(max(promotion_seq), 0) + 1 FROM model_versions)"
                " WHERE model_version = ?",
                (reason, model_version),
            )
            entry = self._require(c, model_version)
            self._log(c, entry)
        return entry.info

    def demote(
        self,
        model_version: str,
        *,
        reason: str = "demoted on request",
        conn: sqlite3.Connection | None = None,
    ) -> ModelInfo:
        """Withdraw ``model_version`` from devices; the latest promoted falls back to the one
        promoted before it. Demoting a version not promoted only records ``reason``.

        Raises:
            NotFound: no such version.
        """
        return self._set_unpromoted(model_version, reason, conn)

    def record_decision(
        self, model_version: str, reason: str, *, conn: sqlite3.Connection | None = None
    ) -> ModelInfo:
        """Store ``reason`` as the version's last decision and leave it (or make it) not
        promoted: what the gate does with a candidate it refuses.

        Raises:
            NotFound: no such version.
        """
        return self._set_unpromoted(model_version, reason, conn)

    def read_file(self, model_version: str) -> tuple[ModelInfo, bytes]:
        """The version and its ONNX bytes, checked against the stored sha256.

        Raises:
            NotFound: no such version, or its file is missing from the blob store.
            Unavailable: the stored file's bytes no longer match its sha256.
        """
        entry = self.entry(model_version)
        data = self.blobs.get(entry.blob_key)
        if hashlib.sha256(data).hexdigest() != entry.info.sha256:
            raise Unavailable(f"the stored file of model {model_version!r} is corrupt")
        return entry.info, data

    def _set_unpromoted(
        self, model_version: str, reason: str, conn: sqlite3.Connection | None
    ) -> ModelInfo:
        with atomic(conn or self.catalog.db.connection) as c:
            before = self._require(c, model_version)
            c.execute(
                "UPDATE model_versions SET promoted = 0, promotion_seq = NULL, gate_reason = ?"
                " WHERE model_version = ?",
                (reason, model_version),
            )
            entry = self._require(c, model_version)
            if before.info.promoted:
                self._log(c, entry)
        return entry.info

    def _log(self, c: sqlite3.Connection, entry: ModelEntry) -> None:
        if self.outbox is not None:
            self.outbox.enqueue(WAREHOUSE_TABLE, [_warehouse_row(entry.info)], conn=c)

    def _require(self, c: sqlite3.Connection, model_version: str) -> ModelEntry:
        entry = self._get(c, model_version)
        if entry is None:
            raise NotFound(f"no model version {model_version!r}")
        return entry

    @staticmethod
    def _get(c: sqlite3.Connection, model_version: str) -> ModelEntry | None:
        if not isinstance(model_version, str):
            raise InvalidInputError(f"model_version must be a str, got {model_version!r}")
        row = c.execute(
            f"SELECT {_COLUMNS} FROM model_versions WHERE model_version = ?", (model_version,)
        ).fetchone()
        return None if row is None else _entry(row)


def _entry(row: tuple[Any, ...]) -> ModelEntry:
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


def _warehouse_row(info: ModelInfo) -> dict[str, Any]:
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
