"""The request middleware: a request id, one structured log line and the request metrics.

A plain ASGI middleware, not Starlette's ``BaseHTTPMiddleware``: that one relays every request
body chunk and response through a task and memory streams, a cost an upload server pays on
every batch.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from starlette.datastructures import URL, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.logging import REQUEST_LOGGER, request_fields
from server.metrics import UNMATCHED_ROUTE, ServerMetrics

__all__ = ["REQUEST_ID_HEADER", "ObserveRequests"]

REQUEST_ID_HEADER = "X-Request-ID"
_HEADER_KEY = REQUEST_ID_HEADER.lower().encode("latin-1")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")

request_log = logging.getLogger(REQUEST_LOGGER)


class ObserveRequests:
    """Gives each HTTP request an id (the client's ``X-Request-ID`` when it is well formed, else
    a new one), echoes it on the response, and once the request ends logs one line and counts
    it, with its route template, status and duration (500 when the app raised).

    Args:
        app: the wrapped ASGI app.
        metrics: where requests are counted.
    """

    def __init__(self, app: ASGIApp, metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope["headers"] if k == _HEADER_KEY), b"").decode("latin-1")
        request_id = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id
        start = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self._log(scope, state, status, time.perf_counter() - start, request_id)

    def _log(
        self, scope: Scope, state: dict[str, Any], status: int, elapsed: float, request_id: str
    ) -> None:
        method, path = scope["method"], URL(scope=scope).path  # as Request.url.path: quoted
        route = getattr(scope.get("route"), "path", UNMATCHED_ROUTE)
        self.metrics.observe_request(method, route, status, elapsed)
        principal = state.get("principal")
        request_log.info(
            "%s %s %d",
            method,
            path,
            status,
            extra=request_fields(
                method=method,
                path=path,
                status=status,
                duration_s=elapsed,
                request_id=request_id,
                role=None if principal is None else principal.role.value,
                device_id=None if principal is None else principal.device_id,
                token_id=None if principal is None else principal.token_id,
            ),
        )
