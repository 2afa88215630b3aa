"""Operator routes: liveness, readiness and Prometheus metrics (no authentication)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from server.app.deps import Services
from server.metrics import CONTENT_TYPE, ServerMetrics

__all__ = ["Health", "Readiness", "router"]

router = APIRouter(tags=["operations"])


class Health(BaseModel):
    """The process answers."""

    status: Literal["ok"] = Field(description="Always `ok` when the process answers.")


class Readiness(BaseModel):
    """Whether every backing store answers now, and which one does not."""

    status: Literal["ready", "unavailable"] = Field(description="`ready` when all checks pass.")
    checks: dict[str, str] = Field(
        description="Per part (`catalog`, `blobs`, `warehouse`): `ok` or the error met."
    )


@router.get(
    "/healthz",
    response_model=Health,
    summary="Liveness",
    description="Answers 200 while the process runs; checks no store (see `/readyz`).",
)
def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="Readiness",
    description=(
        "Checks that the catalog is writable, the blob store reachable and the warehouse sink "
        "answers a ping. 200 when all pass, 503 naming the part that failed otherwise."
    ),
    responses={503: {"model": Readiness, "description": "A backing store is down."}},
)
def readyz(services: Services) -> JSONResponse:
    checks = services.readiness()
    ready = all(v == "ok" for v in checks.values())
    body = Readiness(status="ready" if ready else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    description=(
        "This app's metrics in Prometheus text format: requests and latency by route and "
        "status, warehouse outbox pending rows, outbox drainer failures."
    ),
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE: {}}, "description": "Prometheus text."}},
)
def metrics(request: Request) -> Response:
    registry: ServerMetrics = request.app.state.metrics
    return Response(registry.render(), media_type=CONTENT_TYPE)
