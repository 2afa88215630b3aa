"""The model registry: :class:`ModelRegistry` over the catalog's ``model_versions`` table.

A model version is named by the ONNX file itself (its ``curator.model_version`` metadata), so
registering is idempotent on the bytes: the same file again returns the stored version and
writes nothing; another file under a registered version, or for a dataset snapshot that already
yielded a version, is a :class:`RegistryConflict`. Files are checked against the model contract
before anything is stored (:mod:`server.registry.files`); rows are read by
:mod:`server.registry.rows`, fields checked by :mod:`server.registry.checks`.

Promotion is a flag plus an order: every promotion takes the next ``promotion_seq``, and
:meth:`ModelRegistry.latest_promoted` is the promoted version promoted last, so promoting an
older version rolls back to it and demoting the newest falls back to the one before. Each
registration and each change of the flag enqueues the version's warehouse row in the same
transaction. The table comes with the catalog's migrations (``catalog.0004_model_registry``).
"""

from __future__ import annotations

import builtins
import sqlite3
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from curator.errors import InvalidInputError
from curator.wire import ModelInfo
from server.blobs import BlobStore
from server.catalog.answers import iso
from server.catalog.store import Catalog
from server.db import atomic
from server.labeling.classes import register_class_names
from server.registry.checks import (
    MAX_METRICS,
    RegistryConflict,
    check_metrics,
    check_snapshot,
    check_version,
)
from server.registry.files import read_checked, stage_model
from server.registry.rows import (
    WAREHOUSE_TABLE,
    ModelEntry,
    RegisteredModel,
    StagedModel,
    all_entries,
    download_path,
    find_entry,
    insert_entry,
    latest_promoted_entry,
    require_entry,
    warehouse_row,
)

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


def _utc_now() -> datetime:
    return datetime.now(UTC)


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
        """Check ``onnx_bytes`` against the model contract and put them in the blob store
        (:func:`server.registry.files.stage_model`).

        Raises:
            InvalidInputError: ``onnx_bytes`` is not bytes, or a bad model version.
            ModelContractError: not an ONNX model, or one that breaks the contract.
            MissingDependencyError: onnxruntime is not installed.
        """
        return stage_model(self.blobs, onnx_bytes)

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
        parent = None if parent_version is None else check_version(parent_version, "parent_version")
        snapshot = check_snapshot(snapshot_key)
        clean = check_metrics(metrics)
        staged = onnx_bytes if isinstance(onnx_bytes, StagedModel) else self.stage(onnx_bytes)
        if parent == staged.model_version:
            raise InvalidInputError(f"model {parent!r} cannot be its own parent_version")
        with atomic(conn or self.catalog.db.connection) as c:
            stored = find_entry(c, staged.model_version)
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
            entry = insert_entry(c, staged, parent, snapshot, clean, created_at)
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
        return require_entry(self.catalog.db.connection, model_version)

    def list(self) -> builtins.list[ModelInfo]:
        """Every registered version, oldest first."""
        return [e.info for e in all_entries(self.catalog.db.connection)]

    def latest_promoted(self, *, conn: sqlite3.Connection | None = None) -> ModelInfo | None:
        """The promoted version promoted last, or None when none is promoted."""
        entry = latest_promoted_entry(conn or self.catalog.db.connection)
        return None if entry is None else entry.info

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
            entry = require_entry(c, model_version)
            latest = self.latest_promoted(conn=c)
            if latest is not None and latest.model_version == model_version:
                return entry.info
            c.execute(
                "UPDATE model_versions SET promoted = 1, gate_reason = ?, promotion_seq ="
                " (SELECT coalesce(max(promotion_seq), 0) + 1 FROM model_versions)"
                " WHERE model_version = ?",
                (reason, model_version),
            )
            entry = require_entry(c, model_version)
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
        return entry.info, read_checked(self.blobs, entry)

    def _set_unpromoted(
        self, model_version: str, reason: str, conn: sqlite3.Connection | None
    ) -> ModelInfo:
        with atomic(conn or self.catalog.db.connection) as c:
            before = require_entry(c, model_version)
            c.execute(
                "UPDATE model_versions SET promoted = 0, promotion_seq = NULL, gate_reason = ?"
                " WHERE model_version = ?",
                (reason, model_version),
            )
            entry = require_entry(c, model_version)
            if before.info.promoted:
                self._log(c, entry)
        return entry.info

    def _log(self, c: sqlite3.Connection, entry: ModelEntry) -> None:
        if self.outbox is not None:
            self.outbox.enqueue(WAREHOUSE_TABLE, [warehouse_row(entry.info)], conn=c)
