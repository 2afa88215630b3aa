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

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

__all__ = ["REQUEST_LOGGER", "JsonFormatter", "configure_logging", "request_fields"]

REQUEST_LOGGER = "server.requests"
"""The logger of the one-line-per-request access log."""

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
_STANDARD.add("color_message")  # uvicorn's ANSI-coloured copy of the message


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object: the standard fields plus its ``extra`` ones."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extra = {k: v for k, v in vars(record).items() if k not in _STANDARD}
        extra = {k: v for k, v in extra.items() if not k.startswith("_")}
        if extra:
            line += " " + " ".join(f"{k}={v}" for k, v in extra.items())
        if record.exc_info and "Traceback" not in line:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure_logging(
    level: str = "INFO",
    fmt: Literal["json", "text"] = "json",
    *,
    stream: TextIO | None = None,
) -> logging.Handler:
    """Send every log record at ``level`` or above to ``stream`` (stderr) in ``fmt``.

    Replaces the handlers of the root logger and lets uvicorn's loggers propagate to it, so the
    whole process logs one way. Returns the handler installed.
    """
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(_TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
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
