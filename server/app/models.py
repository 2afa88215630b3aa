"""The model registry over HTTP: devices poll ``GET /v1/models/latest`` and download the file;
admins list, upload and promote versions.

Storage, idempotency and the promotion gate are :mod:`server.registry`; docs/registry.md
describes the routes.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from curator.errors import InvalidInputError, ModelContractError
from curator.wire import ModelInfo
from server.app.bodies import check_media_type, read_body
from server.app.deps import AdminPrincipal, CurrentPrincipal, Services
from server.app.errors import ErrorBody, ErrorResponse
from server.app.services import ServerServices
from server.registry import ModelRegistry, RegistryConflict, register_and_gate

__all__ = ["MAX_MODEL_BYTES", "PromoteMode", "router"]

router = APIRouter(prefix="/v1/models", tags=["models"])

MAX_MODEL_BYTES = 256 * 1024 * 1024
"""The largest ONNX file accepted by ``POST /v1/models`` (256 MiB)."""

_ONNX = "application/octet-stream"
_ETAG_HEADER = {
    "ETag": {"description": 'The sha256 of the ONNX file, quoted: `"<sha256>"`.', "schema": {
        "type": "string"}}
}  # fmt: skip


class PromoteMode(StrEnum):
    """What ``POST /v1/models`` does about promotion."""

    AUTO = "auto"
    YES = "yes"
    NO = "no"


def _registry(services: ServerServices) -> ModelRegistry:
    return ModelRegistry(services.catalog, services.blobs, services.outbox)


def _etag(sha256: str) -> str:
    return f'"{sha256}"'


def _not_modified(request: Request, etag: str) -> bool:
    """Whether ``If-None-Match`` names ``etag`` (weak or strong) or is ``*``."""
    given = request.headers.get("if-none-match")
    if given is None:
        return False
    tags = {t.strip().removeprefix("W/") for t in given.split(",")}
    return "*" in tags or etag in tags


def _error(status: int, code: str, message: str) -> JSONResponse:
    body = ErrorResponse(error=ErrorBody(code=code, message=message))
    return JSONResponse(body.model_dump(), status_code=status)


def _metrics(text: str | None) -> dict[str, Any] | None:
    """The ``metrics`` query value (a JSON object), or a 422 naming it."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError as exc:
        value = exc
    if not isinstance(value, dict):
        raise RequestValidationError(
            [{"loc": ("query", "metrics"), "msg": "must be a JSON object of name to number",
              "type": "value_error", "input": text[:200]}]
        )  # fmt: skip
    return value


def _register(
    registry: ModelRegistry,
    body: bytes,
    promote: bool,
    *,
    parent_version: str | None,
    snapshot_key: str | None,
    metrics: dict[str, Any] | None,
) -> tuple[ModelInfo, bool, str | None]:
    """Register ``body`` and promote it or not as asked, in one transaction: the version as
    stored, whether it is new, and the reason recorded (None when it was registered before)."""
    staged = registry.stage(body)
    with registry.catalog.atomic() as conn:
        added = registry.add(
            staged,
            parent_version=parent_version,
            snapshot_key=snapshot_key,
            metrics=metrics,
            conn=conn,
        )
        version = added.info.model_version
        if not added.created:
            return added.info, False, None
        if promote:
            reason = "promoted on request (promote=yes)"
            return registry.promote(version, reason=reason, conn=conn), True, reason
        reason = "not promoted: promote=no"
        return registry.record_decision(version, reason, conn=conn), True, reason


_AUTH: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "No valid bearer token."},
}
_ADMIN: dict[int | str, dict[str, Any]] = {
    **_AUTH,
    403: {"model": ErrorResponse, "description": "Not an admin token."},
}


@router.get(
    "/latest",
    response_model=ModelInfo,
    summary="The model devices should run",
    description=(
        'The newest promoted model version (`ModelInfo`), with `ETag: "<sha256>"`. A device '
        "polls with `If-None-Match` set to the ETag it has: `304 Not Modified` (empty) while "
        "the promoted model is unchanged. Download the file from `download_path` and check its "
        "sha256 and the model contract before swapping. Any role (`device`, `labeler`, `admin`)."
    ),
    responses={
        200: {"headers": _ETAG_HEADER},
        304: {"description": "The promoted model is still the one the ETag names."},
        **_AUTH,
        404: {"model": ErrorResponse, "description": "No model version is promoted yet."},
    },
)
def latest_model(request: Request, services: Services, principal: CurrentPrincipal) -> Response:
    info = _registry(services).latest_promoted()
    if info is None:
        return _error(404, "not_found", "no model version is promoted yet")
    etag = _etag(info.sha256)
    if _not_modified(request, etag):
        return Response(status_code=304, headers={"ETag": etag})
    return Response(info.model_dump_json(), media_type="application/json", headers={"ETag": etag})


@router.get(
    "/{model_version}/file",
    response_class=Response,
    summary="Download a model version's ONNX file",
    description=(
        "The ONNX bytes of a registered version (`application/octet-stream`), with "
        '`ETag: "<sha256>"` and `Content-Length`; `If-None-Match` with the ETag answers 304. '
        "The bytes are checked against the registered sha256 before they are sent. Any role."
    ),
    responses={
        200: {
            "content": {_ONNX: {"schema": {"type": "string", "format": "binary"}}},
            "headers": _ETAG_HEADER,
            "description": "The ONNX file.",
        },
        304: {"description": "The ETag given in `If-None-Match` is this file's."},
        **_AUTH,
        404: {"model": ErrorResponse, "description": "No such model version."},
    },
)
def model_file(
    model_version: str, request: Request, services: Services, principal: CurrentPrincipal
) -> Response:
    registry = _registry(services)
    etag = _etag(registry.get(model_version).sha256)
    if _not_modified(request, etag):
        return Response(status_code=304, headers={"ETag": etag})
    info, data = registry.read_file(model_version)
    return Response(data, media_type=_ONNX, headers={"ETag": _etag(info.sha256)})


@router.get(
    "",
    response_model=list[ModelInfo],
    summary="List model versions",
    description="Every registered model version, oldest first. `admin` tokens only.",
    responses=_ADMIN,
)
def list_models(services: Services, principal: AdminPrincipal) -> list[ModelInfo]:
    return _registry(services).list()


@router.post(
    "",
    response_model=ModelInfo,
    status_code=201,
    summary="Register a model version",
    description=(
        "Upload an ONNX file (`application/octet-stream`, at most 256 MiB) that meets the model "
        "contract (docs/model-contract.md); its version is its `curator.model_version` "
        "metadata. `promote`: `auto` applies the promotion gate (promoted unless worse than "
        "the current promoted model on `gate_metric` by more than `gate_margin`), `yes` "
        "promotes, `no` keeps it unpromoted. The gate's or the request's reason is in the "
        "`X-Promotion-Reason` header. Idempotent: the same bytes again answer 200 with the "
        "stored version and change nothing. `admin` tokens only."
    ),
    responses={
        200: {"model": ModelInfo, "description": "These bytes were registered already."},
        201: {"description": "Registered now."},
        **_ADMIN,
        409: {
            "model": ErrorResponse,
            "description": "The version, or the snapshot, is registered with other bytes.",
        },
        413: {"model": ErrorResponse, "description": "The body is over 256 MiB."},
        415: {"model": ErrorResponse, "description": "The body is not application/octet-stream."},
        422: {
            "model": ErrorResponse,
            "description": "The file breaks the model contract, or a query value is malformed.",
        },
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "The ONNX file.",
            "content": {_ONNX: {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def register_model(
    request: Request,
    services: Services,
    principal: AdminPrincipal,
    parent_version: Annotated[
        str | None, Query(description="The version it was fine-tuned from.")
    ] = None,
    snapshot_key: Annotated[
        str | None, Query(description="The dataset snapshot it was trained on (one version each).")
    ] = None,
    metrics: Annotated[
        str | None,
        Query(description='Held-out metrics as a JSON object, e.g. `{"accuracy": 0.91}`.'),
    ] = None,
    promote: Annotated[
        PromoteMode, Query(description="`auto` (the gate), `yes` or `no`.")
    ] = PromoteMode.AUTO,
    gate_metric: Annotated[
        str, Query(description="The metric the gate compares (`auto` only).")
    ] = "accuracy",
    gate_margin: Annotated[
        float, Query(ge=0, le=1e9, description="How much worse a candidate may be (`auto`).")
    ] = 0.02,
) -> Response:
    check_media_type(request, _ONNX)
    parsed = _metrics(metrics)
    body = await read_body(request, MAX_MODEL_BYTES)
    registry = _registry(services)
    try:
        if promote is PromoteMode.AUTO:
            gated = await run_in_threadpool(
                register_and_gate, registry, body, parent_version=parent_version,
                snapshot_key=snapshot_key, metrics=parsed, metric=gate_metric, margin=gate_margin,
            )  # fmt: skip
            info, created = gated.info, gated.created
            reason = None if gated.decision is None else gated.decision.reason
        else:
            info, created, reason = await run_in_threadpool(
                _register, registry, body, promote is PromoteMode.YES,
                parent_version=parent_version, snapshot_key=snapshot_key, metrics=parsed,
            )  # fmt: skip
    except ModelContractError as exc:
        return _error(422, "model_contract_error", str(exc))
    except RegistryConflict as exc:
        return _error(409, "conflict", str(exc))
    except InvalidInputError as exc:
        return _error(422, "invalid_input", str(exc))
    headers = {} if reason is None else {"X-Promotion-Reason": reason}
    return Response(
        info.model_dump_json(),
        status_code=201 if created else 200,
        media_type="application/json",
        headers=headers,
    )


@router.post(
    "/{model_version}/promote",
    response_model=ModelInfo,
    summary="Promote a model version",
    description=(
        "Make a registered version the one `GET /v1/models/latest` answers, without the gate "
        "(an operator's decision; promoting an older version rolls back to it). Promoting the "
        "current one changes nothing. `admin` tokens only."
    ),
    responses={**_ADMIN, 404: {"model": ErrorResponse, "description": "No such model version."}},
)
def promote_model(model_version: str, services: Services, principal: AdminPrincipal) -> ModelInfo:
    return _registry(services).promote(model_version, reason="promoted by an admin")


@router.post(
    "/{model_version}/demote",
    response_model=ModelInfo,
    summary="Withdraw a model version from devices",
    description=(
        "Mark a version not promoted; `GET /v1/models/latest` falls back to the version "
        "promoted before it (404 when none is left). `admin` tokens only."
    ),
    responses={**_ADMIN, 404: {"model": ErrorResponse, "description": "No such model version."}},
)
def demote_model(model_version: str, services: Services, principal: AdminPrincipal) -> ModelInfo:
    return _registry(services).demote(model_version, reason="demoted by an admin")
