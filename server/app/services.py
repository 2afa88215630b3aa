"""The stores one server process opens from its settings, and their readiness checks.

No FastAPI here: :class:`ServerServices` is plain Python, opened by the app's lifespan (or by a
test) and handed to routes through :mod:`server.app.deps`. Opening takes the data folder's lock
(:mod:`server.datadir`: one server per folder) and starts the dedup snapshotter thread
(:mod:`server.app.snapshotter`) and the job lease sweeper (:class:`server.jobs.LeaseSweeper`:
jobs whose worker died are re-dispatched even while no worker runs); closing stops both, takes a
last snapshot and drops the lock.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

from curator.errors import InvalidInputError
from server.app.snapshotter import DedupSnapshotter, Progress
from server.auth import TokenStore
from server.blobs import BlobStore, blob_key, open_blob_store
from server.catalog import Catalog
from server.datadir import DataDirLock
from server.db import SQLiteFile
from server.dedup import FleetDedup, index_factory
from server.dedup.snapshot import read_manifest
from server.ingest import IngestService, restore_dedup
from server.jobs import JobQueue, JobStore, LeaseSweeper, make_huey, sweep_interval
from server.settings import ServerSettings
from server.warehouse import MetadataSink, Outbox, OutboxDrainer, SqliteSink

__all__ = ["ServerServices", "open_sink"]

_PROBE_KEY = blob_key(b"", "bin")
log = logging.getLogger(__name__)


def open_sink(settings: ServerSettings) -> MetadataSink:
    """The warehouse sink the settings name; Snowflake connects lazily, on first use."""
    if settings.warehouse == "snowflake":
        from server.warehouse import SnowflakeSink

        sf = settings.snowflake
        return SnowflakeSink(sf.connect_args(), sf.database, sf.schema_)
    return SqliteSink(settings.warehouse_path)


@dataclass
class ServerServices:
    """The opened stores: catalog and tokens share ``db``; the outbox lives in the same file.

    ``snapshotter`` saves the dedup indexes in the background; ``job_queue`` dispatches jobs to
    the workers and ``lease_sweeper`` requeues jobs whose lease expired, every
    ``sweep_interval(job_lease_s)`` seconds; ``lock`` is the data folder's lock when these
    services took it themselves (None when the caller passed one in and keeps it).
    """

    settings: ServerSettings
    db: SQLiteFile
    catalog: Catalog
    tokens: TokenStore
    blobs: BlobStore
    sink: MetadataSink
    outbox: Outbox
    drainer: OutboxDrainer
    ingest: IngestService
    snapshotter: DedupSnapshotter
    job_queue: JobQueue
    lease_sweeper: LeaseSweeper
    lock: DataDirLock | None

    @classmethod
    def open(
        cls,
        settings: ServerSettings,
        *,
        sink: MetadataSink | None = None,
        lock: DataDirLock | None = None,
    ) -> ServerServices:
        """Lock ``settings.data_dir`` (created if missing), open every store under it, restore
        the dedup indexes and start the snapshotter and lease sweeper threads.

        Args:
            settings: the process settings.
            sink: a warehouse sink to use instead of the one the settings name (tests).
            lock: the data folder's lock, already held by the caller (the CLI takes it before
                uvicorn starts, to fail with one line); the caller keeps it and releases it.
                None: take it here and release it in :meth:`close`.

        Raises:
            DataDirInUse: another server holds the data folder.
            InvalidInputError: ``lock`` is released or locks another folder.
        """
        if lock is None:
            owned: DataDirLock | None = DataDirLock.acquire(settings.data_dir)
        else:
            _check_lock(lock, settings.data_dir)
            owned = None
        try:
            services = cls._open_locked(settings, sink, owned)
        except BaseException:
            if owned is not None:
                owned.release()
            raise
        services.snapshotter.start()
        services.lease_sweeper.start()
        return services

    @classmethod
    def _open_locked(
        cls, settings: ServerSettings, sink: MetadataSink | None, lock: DataDirLock | None
    ) -> ServerServices:
        db = SQLiteFile(settings.catalog_path)
        try:
            catalog = Catalog(db)
            tokens = TokenStore(db)
            blobs = open_blob_store(settings.blob_location)
            the_sink = sink if sink is not None else open_sink(settings)
            outbox = Outbox(settings.catalog_path)
            snapshot_dir = settings.data_dir / "dedup"
            ingest = IngestService(
                catalog,
                blobs,
                restore_dedup(
                    catalog,
                    snapshot_dir,
                    threshold=settings.dedup_threshold,
                    index_factory=index_factory(settings.dedup_index),
                ),
                outbox,
                max_pixels=settings.max_pixels,
                check_workers=settings.check_workers,
                snapshot_dir=snapshot_dir,
            )
            job_queue = JobQueue(make_huey(settings.data_dir, settings.jobs_redis_url))
        except BaseException:
            db.close()
            raise
        drainer = OutboxDrainer(outbox, the_sink)
        snapshotter = DedupSnapshotter(
            ingest.snapshot,
            lambda: _progress(ingest.dedup),
            saved={
                mv: (e["watermark"], e["vectors"])
                for mv, e in (read_manifest(snapshot_dir, warn=False) or {}).items()
            },
            interval_s=settings.snapshot_interval_s,
            every_frames=settings.snapshot_every_frames,
        )
        sweeper = LeaseSweeper(
            JobStore(db), job_queue, interval_s=sweep_interval(settings.job_lease_s)
        )
        return cls(
            settings, db, catalog, tokens, blobs, the_sink, outbox, drainer, ingest, snapshotter,
            job_queue, sweeper, lock,
        )  # fmt: skip

    def readiness(self) -> dict[str, str]:
        """Check each backing part now: ``{"catalog": "ok", "blobs": "...error...", ...}``."""
        checks: dict[str, str] = {}
        try:
            with self.db.atomic() as conn:  # BEGIN IMMEDIATE: takes the write lock
                conn.execute("SELECT 1")
            checks["catalog"] = "ok"
        except Exception as exc:
            checks["catalog"] = f"{type(exc).__name__}: {exc}"
        try:
            self.blobs.exists(_PROBE_KEY)
            checks["blobs"] = "ok"
        except Exception as exc:
            checks["blobs"] = f"{type(exc).__name__}: {exc}"
        try:
            self.ingest.dedup.stats()
            checks["index"] = "ok"
        except Exception as exc:
            checks["index"] = f"{type(exc).__name__}: {exc}"
        try:
            self.sink.ping()
            checks["warehouse"] = "ok"
        except Exception as exc:
            checks["warehouse"] = f"{type(exc).__name__}: {exc}"
        return checks

    def close(self) -> None:
        """Stop the drainer, the lease sweeper and the snapshotter, snapshot the dedup indexes (so
        the next start catches up less), stop the image checkers, close the stores and the job
        queue (errors on close are logged or ignored), then drop the data folder's lock if these
        services took it."""
        self.drainer.stop()
        if not self.lease_sweeper.stop():
            log.warning("lease sweeper still sweeping after 30 s; closing the stores anyway")
        if not self.snapshotter.stop():
            log.warning("dedup snapshotter still saving after 30 s; the final snapshot waits")
        self.snapshotter.snapshot_now("shutdown")  # logged and counted when it fails
        closers = (
            self.ingest.images.close,
            self.sink.close,
            self.outbox.close,
            self.job_queue.close,
            self.db.close,
        )
        for close in closers:
            with contextlib.suppress(Exception):
                close()
        if self.lock is not None:
            self.lock.release()


def _check_lock(lock: DataDirLock, data_dir: Path) -> None:
    if not lock.held or lock.data_dir.resolve() != data_dir.resolve():
        raise InvalidInputError(f"lock must be the held lock of {str(data_dir)!r}, got {lock!r}")


def _progress(dedup: FleetDedup) -> Progress:
    """``(watermark, vectors)`` of each version's index, from the lock-free stats."""
    return {
        mv: (int(space["watermark"]), int(space["vectors"]))
        for mv, space in dedup.stats()["model_versions"].items()
    }
