"""``POST /v1/batches``: a device uploads the frames it kept (docs/wire.md, docs/ingest.md)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from curator.wire import MEDIA_TYPE, BatchResult, decode_batch
from server.app.bodies import check_media_type, read_body
from server.app.deps import CurrentPrincipal, Services

__all__ = ["router"]

router = APIRouter(tags=["ingest"])

_ERRORS = {
    400: {"description": "The body breaks the wire format (the message says where)."},
    401: {"description": "No valid bearer token."},
    403: {"description": "The token may not upload for this batch's device."},
    413: {"description": "The body is larger than the server's limit."},
    415: {"description": f"The body is not `{MEDIA_TYPE}`."},
}


@router.post(
    "/v1/batches",
    response_model=BatchResult,
    summary="Upload a batch of kept frames",
    description=(
        f"The body is one `{MEDIA_TYPE}` batch: a JSON header and the frames' embeddings and "
        "encoded images as raw bytes (docs/wire.md). Every frame gets an answer in upload "
        "order: `accepted`, `duplicate` (of which frame, at what similarity) or `rejected` "
        "(why). Sending the same batch again returns the same answers and stores nothing more, "
        "so a device retries freely after a cut and acks only what was answered."
    ),
    responses=_ERRORS,  # type: ignore[arg-type]
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "A binary batch: magic `CURB`, framing version, JSON header, blobs.",
            "content": {MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def upload_batch(
    request: Request, services: Services, principal: CurrentPrincipal
) -> BatchResult:
    check_media_type(request, MEDIA_TYPE)
    body = await read_body(request, services.settings.max_body_bytes)
    batch = decode_batch(body)
    result = await run_in_threadpool(services.ingest.ingest, batch, principal)
    for status in ("accepted", "duplicate", "rejected"):
        if count := result.count(status):
            request.app.state.metrics.frames.labels(status).inc(count)
    return result
