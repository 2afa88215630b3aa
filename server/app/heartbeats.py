"""``POST /v1/heartbeats`` (a device reports its counters) and ``GET /v1/devices`` (operators).

The wire model is :class:`curator.wire.DeviceHeartbeat` (docs/wire.md); storage and the
warehouse row are :class:`server.catalog.heartbeats.HeartbeatStore`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from curator.wire import DeviceHeartbeat, HeartbeatAck
from server.app.bodies import check_media_type, read_body
from server.app.deps import AdminPrincipal, CurrentPrincipal, Services
from server.app.errors import ErrorResponse
from server.auth import Principal, Role, require
from server.catalog.heartbeats import HeartbeatStore
from server.errors import Forbidden
from server.metrics import ServerMetrics

__all__ = ["MAX_HEARTBEAT_BYTES", "DeviceList", "DeviceStatus", "router"]

router = APIRouter(prefix="/v1", tags=["devices"])


def device_principal(principal: CurrentPrincipal) -> Principal:
    """The caller, if its token is a ``device`` token (checked before the body is read).

    Raises:
        Forbidden: a ``labeler`` or ``admin`` token; heartbeats are a device's own report.
    """
    if principal.role is not Role.DEVICE:
        raise Forbidden(
            f"token {principal.token_id} has role {principal.role.value!r}; "
            "only a device token may send heartbeats"
        )
    return principal


DevicePrincipal = Annotated[Principal, Depends(device_principal)]


class DeviceStatus(BaseModel):
    """A device's newest heartbeat (by the device's ``sent_at``), as stored."""

    model_config = ConfigDict(from_attributes=True)  # built from the store's rows

    device_id: str = Field(description="The device.")
    sent_at: datetime = Field(description="When the device sent its newest heartbeat (UTC).")
    received_at: datetime = Field(description="When the server first received that one (UTC).")
    started_at: datetime = Field(
        description="When the device's selector process started; the counters count from here."
    )
    model_version: str | None = Field(description="The model the device scores frames with.")
    software_version: str = Field(description="The device's curator version.")
    counters: dict[str, int] = Field(description="Counters since started_at, by name.")
    buffer_frames: int = Field(description="Frames waiting in the device's buffer.")
    buffer_bytes: int = Field(description="Bytes the device's buffer takes on disk.")
    buffer_max_bytes: int = Field(description="The device buffer's byte cap.")
    last_device_seq: int = Field(description="The highest device_seq the device has given.")


class DeviceList(BaseModel):
    """Every device that sent a heartbeat, with its newest one."""

    devices: list[DeviceStatus] = Field(description="One entry per device, by device id.")


_AUTH_ERRORS: dict[int | str, dict[str, object]] = {
    401: {"model": ErrorResponse, "description": "No valid bearer token."},
}


MAX_HEARTBEAT_BYTES = 64 * 1024
"""The largest heartbeat body read (128 counters of the longest names take about 12 KiB)."""

_JSON = "application/json"


async def _read_heartbeat(request: Request) -> DeviceHeartbeat:
    """The body as a :class:`DeviceHeartbeat`, read only after the caller was authorised.

    Raises:
        UnsupportedMediaType: the Content-Type is not ``application/json``.
        PayloadTooLarge: the body passes :data:`MAX_HEARTBEAT_BYTES`.
        RequestValidationError: the body is not a valid heartbeat (answered 422 like any
            request validation error, locations under ``body``).
    """
    check_media_type(request, _JSON)
    body = await read_body(request, MAX_HEARTBEAT_BYTES)
    try:
        return DeviceHeartbeat.model_validate_json(body)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        ) from None


# DeviceHeartbeat's schema has no $defs, so it can be inlined in the operation as is.
_BODY_SCHEMA = DeviceHeartbeat.model_json_schema()


@router.post(
    "/heartbeats",
    response_model=HeartbeatAck,
    summary="Report a device's counters",
    description=(
        "A device's periodic heartbeat (`application/json` `DeviceHeartbeat`, docs/wire.md): "
        "its counters since `started_at`, its buffer and its model and software versions. "
        "Only a `device` token, for its own `device_id`; the body is read after that check. "
        "Idempotent on (`device_id`, `sent_at`): the same "
        "heartbeat again answers `duplicate: true` with the first `received_at` and stores "
        "nothing more. Each new heartbeat is stored in the catalog and logged to the "
        "warehouse table `device_heartbeats`."
    ),
    responses={
        **_AUTH_ERRORS,
        403: {
            "model": ErrorResponse,
            "description": "Not a device token, or a device token reporting for another device.",
        },
        413: {"model": ErrorResponse, "description": "The body is over 64 KiB."},
        415: {"model": ErrorResponse, "description": "The body is not `application/json`."},
        422: {"model": ErrorResponse, "description": "The body is not a valid heartbeat."},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "One `DeviceHeartbeat` (docs/wire.md).",
            "content": {_JSON: {"schema": _BODY_SCHEMA}},
        }
    },
)
async def post_heartbeat(
    request: Request, services: Services, principal: DevicePrincipal
) -> HeartbeatAck:
    heartbeat = await _read_heartbeat(request)
    require(principal, Role.DEVICE, heartbeat.device_id)
    store = HeartbeatStore(services.catalog, services.outbox)
    recorded = await run_in_threadpool(store.record, heartbeat)
    metrics: ServerMetrics = request.app.state.metrics
    metrics.observe_heartbeat(
        recorded.row.device_id, recorded.row.received_at, duplicate=recorded.duplicate
    )
    return recorded.row.to_ack(duplicate=recorded.duplicate)


@router.get(
    "/devices",
    response_model=DeviceList,
    summary="List devices and their newest heartbeat",
    description=(
        "Every device that has sent a heartbeat, ordered by device id, each with its newest "
        "heartbeat by the device's `sent_at`: versions, counters, buffer and when the server "
        "received it. `admin` tokens only."
    ),
    responses={
        **_AUTH_ERRORS,
        403: {"model": ErrorResponse, "description": "Not an admin token."},
    },
)
def list_devices(services: Services, principal: AdminPrincipal) -> DeviceList:
    rows = HeartbeatStore(services.catalog).latest()
    return DeviceList(devices=[DeviceStatus.model_validate(r) for r in rows])
