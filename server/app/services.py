"""The stores one server process opens from its settings, and their readiness checks.

No FastAPI here: :class:`ServerServices` is plain Python, opened by the app's lifespan (or by a
test) and handed to routes through :mod:`server.app.deps`.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

from server.auth import TokenStore
from server.blobs import BlobStore, blob_key, open_blob_store
from server.catalog import Catalog
from server.db import SQLiteFile
from server.ingest import IngestService, restore_dedup
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
    """The opened stores: catalog and tokens share ``db``; the outbox lives in the same file."""

    settings: ServerSettings
    db: SQLiteFile
    catalog: Catalog
    tokens: TokenStore
    blobs: BlobStore
    sink: MetadataSink
    outbox: Outbox
    drainer: OutboxDrainer
    ingest: IngestService

    @classmethod
    def open(cls, settings: ServerSettings, *, sink: MetadataSink | None = None) -> ServerServices:
        """Open every store under ``settings.data_dir`` (created if missing).

        Args:
            settings: the process settings.
            sink: a warehouse sink to use instead of the one the settings name (tests).
        """
        settings.data_dir.mkdir(parents=True, exist_ok=True)
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
                restore_dedup(catalog, snapshot_dir, threshold=settings.dedup_threshold),
                outbox,
                max_pixels=settings.max_pixels,
                snapshot_dir=snapshot_dir,
            )
        except BaseException:
            db.close()
            raise
        drainer = OutboxDrainer(outbox, the_sink)
        return cls(settings, db, catalog, tokens, blobs, the_sink, outbox, drainer, ingest)

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
        """Stop the drainer, snapshot the dedup indexes (so the next start catches up less),
        then close the stores (errors on close are logged or ignored)."""
        self.drainer.stop()
        try:
            self.ingest.snapshot()
        except Exception:
            log.exception("dedup snapshot failed; the next start rebuilds from the catalog")
        for close in (self.sink.close, self.outbox.close, self.db.close):
            with contextlib.suppress(Exception):
                close()
