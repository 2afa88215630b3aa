"""Structured logs for the server process: JSON lines (default) or plain text.

- :func:`configure_logging`: one handler on the root logger, at the process edge (``main()``).
- :class:`JsonFormatter`: one JSON object per line: ``ts``, ``level``, ``logger``, ``message``
  and the record's ``extra`` fields (e.g. a request's ``method``, ``path``, ``status``).
- :func:`request_fields`: the fields of the one line logged per request.

Never logged: the ``Authorization`` header, tokens, passwords. Request lines carry the
principal's role, device id and token id (an id, not a secret) and nothing from the headers but
the request id.
"""

from __future__ import annotations

import logging
from typing import Any, Literal, TextIO

from curator.logs import JsonFormatter
from curator.logs import configure_logging as configure_process_logging

__all__ = ["REQUEST_LOGGER", "JsonFormatter", "configure_logging", "request_fields"]

REQUEST_LOGGER = "server.requests"
"""The logger of the one-line-per-request access log."""


def configure_logging(
    level: str = "INFO",
    fmt: Literal["json", "text"] = "json",
    *,
    stream: TextIO | None = None,
) -> logging.Handler:
    """:func:`curator.logs.configure_logging`, with uvicorn's loggers sent to the same handler.

    Returns the handler installed.
    """
    handler = configure_process_logging(level, fmt, stream=stream)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uv = logging.getLogger(name)
        uv.handlers.clear()
        uv.propagate = True
    logging.getLogger("uvicorn.access").disabled = True  # our request line replaces it
    return handler


def request_fields(
    *,
    method: str,
    path: str,
    status: int,
    duration_s: float,
    request_id: str,
    role: str | None,
    device_id: str | None,
    token_id: str | None,
) -> dict[str, Any]:
    """The ``extra`` fields of one request's log line (no header but the request id)."""
    return {
        "method": method,
        "path": path,
        "status": status,
        "duration_ms": round(duration_s * 1000.0, 3),
        "request_id": request_id,
        "role": role,
        "device_id": device_id,
        "token_id": token_id,
    }
