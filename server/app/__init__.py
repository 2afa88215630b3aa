"""The server's HTTP app: :func:`create_app` builds a FastAPI app from :class:`ServerSettings`.

The app's lifespan opens the stores (:class:`~server.app.services.ServerServices`: catalog and
tokens in one SQLite file, blob store, warehouse sink, outbox and its drainer thread) and closes
them at shutdown. Routers stay thin: each resource has its module (``health``, ``whoami``,
``ingest``), dependencies are ``Annotated`` aliases in :mod:`server.app.deps`, and errors are
translated to JSON by :mod:`server.app.errors`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from server.app import health, heartbeats, ingest, jobs, label_page, labeling, models, whoami
from server.app.errors import install_error_handlers
from server.app.observe import REQUEST_ID_HEADER, ObserveRequests
from server.app.services import ServerServices
from server.datadir import DataDirLock
from server.metrics import ServerMetrics
from server.settings import ServerSettings
from server.warehouse import MetadataSink

__all__ = ["REQUEST_ID_HEADER", "ServerServices", "create_app"]

log = logging.getLogger(__name__)


def create_app(
    settings: ServerSettings,
    *,
    sink: MetadataSink | None = None,
    extra_routers: Sequence[APIRouter] = (),
    data_dir_lock: DataDirLock | None = None,
) -> FastAPI:
    """The server app for ``settings``; the stores open when the app starts (its lifespan).

    Args:
        settings: the process settings.
        sink: a warehouse sink to use instead of the one ``settings`` names (tests).
        extra_routers: more routers to mount (tests).
        data_dir_lock: the data folder's lock when the caller holds it already (the CLI);
            otherwise the lifespan takes it (:meth:`ServerServices.open`).
    """
    metrics = ServerMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = ServerServices.open(settings, sink=sink, lock=data_dir_lock)
        metrics.outbox_pending = services.outbox.pending
        metrics.index_vectors = lambda: {
            version: space["vectors"]
            for version, space in services.ingest.dedup.stats()["model_versions"].items()
        }
        metrics.drainer_stats = lambda: (
            services.drainer.stats().failures,
            services.drainer.stats().drained_rows,
        )
        metrics.dedup_snapshots = lambda: _snapshot_values(services)
        services.drainer.start()
        app.state.services = services
        log.info(
            "server started",
            extra={"data_dir": str(settings.data_dir), "warehouse": settings.warehouse},
        )
        try:
            yield
        finally:
            app.state.services = None
            metrics.outbox_pending = metrics.drainer_stats = metrics.index_vectors = None
            metrics.dedup_snapshots = None
            services.close()
            log.info("server stopped")

    app = FastAPI(
        title="curator server",
        description=(
            "Authenticated ingest, fleet-wide dedup, catalog and warehouse log for fleets of "
            'edge cameras. Every error answers `{"error": {"code", "message"}}`.'
        ),
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.services = None
    install_error_handlers(app, metrics)
    app.add_middleware(ObserveRequests, metrics=metrics)

    app.include_router(health.router)
    app.include_router(whoami.router)
    app.include_router(ingest.router)
    app.include_router(heartbeats.router)
    app.include_router(labeling.router)
    app.include_router(label_page.router)
    app.include_router(jobs.router)
    app.include_router(models.router)
    for router in extra_routers:
        app.include_router(router)
    return app


def _snapshot_values(services: ServerServices) -> tuple[int, int, float, int]:
    s = services.snapshotter.stats()
    return s.saved, s.failures, s.age_s, s.unsaved_vectors
