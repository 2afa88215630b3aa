"""Errors translated at the HTTP edge: every error answer is ``{"error": {"code", "message"}}``.

- :class:`~server.errors.ServerError` subclasses: their ``status_code``, code from the class name
  (``WarehouseUnavailable`` -> ``warehouse_unavailable``); 401 adds ``WWW-Authenticate: Bearer``.
- :class:`~curator.errors.InvalidInputError` and :class:`~curator.errors.WireFormatError`: 400.
- Request validation (FastAPI): 422 ``invalid_request``; Starlette's 404/405: their status.
- Anything else: logged with its traceback, counted, answered 500 with a generic message.
"""

from __future__ import annotations

import logging
import re

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from curator.errors import InvalidInputError, WireFormatError
from server.errors import ServerError, Unauthorized
from server.metrics import ServerMetrics

__all__ = ["ErrorBody", "ErrorResponse", "error_code", "install_error_handlers"]

log = logging.getLogger(__name__)


class ErrorBody(BaseModel):
    """What went wrong."""

    code: str = Field(description="A stable snake_case code, e.g. `unauthorized`.")
    message: str = Field(description="A one-line explanation for people.")


class ErrorResponse(BaseModel):
    """The body of every error answer."""

    error: ErrorBody


def error_code(exc_type: type[BaseException]) -> str:
    """``WarehouseUnavailable`` -> ``warehouse_unavailable``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", exc_type.__name__).lower()


def _answer(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = ErrorResponse(error=ErrorBody(code=code, message=message))
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def install_error_handlers(app: FastAPI, metrics: ServerMetrics) -> None:
    """Register the handlers above on ``app``; the catch-all counts into ``metrics``."""

    async def server_error(request: Request, exc: Exception) -> JSONResponse:
        if not isinstance(exc, ServerError):  # registered for ServerError only
            raise exc
        headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, Unauthorized) else None
        return _answer(exc.status_code, error_code(type(exc)), str(exc), headers)

    async def invalid_input(request: Request, exc: Exception) -> JSONResponse:
        return _answer(400, error_code(type(exc)), str(exc))

    async def invalid_request(request: Request, exc: Exception) -> JSONResponse:
        if not isinstance(exc, RequestValidationError):
            raise exc
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        return _answer(422, "invalid_request", problems or "invalid request")

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        if not isinstance(exc, StarletteHTTPException):
            raise exc
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _answer(exc.status_code, code, str(exc.detail), dict(exc.headers or {}) or None)

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        metrics.unhandled_errors.inc()
        log.error(
            "unhandled error on %s %s",
            request.method,
            request.url.path,
            exc_info=(type(exc), exc, exc.__traceback__),
        )
        return _answer(500, "internal_error", "internal server error")

    app.add_exception_handler(ServerError, server_error)
    app.add_exception_handler(InvalidInputError, invalid_input)
    app.add_exception_handler(WireFormatError, invalid_input)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)
