"""``POST /v1/batches``: a device uploads the frames it kept (docs/wire.md, docs/ingest.md)."""

from __future__ import annotations

import re

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from curator.wire import MEDIA_TYPE, BatchResult, decode_batch
from server.app.deps import CurrentPrincipal, Services
from server.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

__all__ = ["router"]

router = APIRouter(tags=["ingest"])

_CONTENT_LENGTH = re.compile(r"[0-9]+")

_ERRORS = {
    400: {"description": "The body breaks the wire format (the message says where)."},
    401: {"description": "No valid bearer token."},
    403: {"description": "The token may not upload for this batch's device."},
    413: {"description": "The body is larger than the server's limit."},
    415: {"description": f"The body is not `{MEDIA_TYPE}`."},
}


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it passes ``limit`` bytes (before parsing)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not _CONTENT_LENGTH.fullmatch(declared):  # not isdigit(): it takes "²" too
            raise BadRequest(f"Content-Length must be a number of bytes, got {declared[:40]!r}")
        size = declared.lstrip("0")
        # more digits than the limit has is over it; int() refuses over 4300 digits
        if len(size) > len(str(limit)) or int(size or "0") > limit:
            shown = size if len(size) <= 40 else f"a {len(size)}-digit number of"
            raise PayloadTooLarge(f"body of {shown} bytes is over the limit of {limit}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"body is over the limit of {limit} bytes")
    return bytes(body)


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
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != MEDIA_TYPE:
        raise UnsupportedMediaType(f"expected Content-Type {MEDIA_TYPE}, got {media_type!r}")
    body = await _read_body(request, services.settings.max_body_bytes)
    batch = decode_batch(body)
    result = await run_in_threadpool(services.ingest.ingest, batch, principal)
    for status in ("accepted", "duplicate", "rejected"):
        if count := result.count(status):
            request.app.state.metrics.frames.labels(status).inc(count)
    return result
