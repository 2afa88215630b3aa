"""The uploader's HTTP side: :class:`ServerLink`, one server, one bearer token, one client.

It posts batch bodies to ``{server}/v1/batches`` and heartbeats to ``{server}/v1/heartbeats``
and turns a 401 or 403 answer into :class:`~edge_selector.sync_outcomes.SyncAuthError`. Every
other answer goes back to :class:`edge_selector.sync.Uploader`, which decides. The client is the
seam for tests: pass one built on an ``httpx.MockTransport``. The token is never logged nor put
in a message.
"""

from __future__ import annotations

import json
import re

import httpx

from curator.errors import InvalidInputError
from curator.wire import MEDIA_TYPE, DeviceHeartbeat
from edge_selector.sync_outcomes import SyncAuthError

__all__ = ["ServerLink", "describe_transport_error", "error_message", "retry_after_s"]

_TOKEN = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no spaces: it goes into a header
_URL = re.compile(r"https?://[^/\s]+(/\S*)?")


class ServerLink:
    """Posts to one server with one device token.

    Args:
        server: base URL, e.g. ``http://10.0.0.5:8000`` (a trailing ``/`` is ignored).
        token: the device's bearer token.
        timeout_s: per-request timeout.
        client: an ``httpx.Client`` to use; default: one made here and closed by :meth:`close`.

    Raises:
        InvalidInputError: not an http(s) URL, or an empty token or one with spaces.
    """

    def __init__(
        self, server: str, token: str, *, timeout_s: float, client: httpx.Client | None = None
    ) -> None:
        if not isinstance(server, str) or not _URL.fullmatch(server):
            raise InvalidInputError(f"server must be an http(s):// URL, got {server!r}")
        if not isinstance(token, str) or not _TOKEN.fullmatch(token):
            raise InvalidInputError(
                "token must be a non-empty string of printable ASCII, no spaces"
            )
        self.server = server.rstrip("/")
        self._auth = {"Authorization": f"Bearer {token}"}
        self._timeout = timeout_s
        self._own_client = client is None
        self._client = client if client is not None else httpx.Client(timeout=timeout_s)

    def post_batch(self, body: bytes) -> httpx.Response:
        """POST a ``curator.wire`` batch body.

        Raises:
            httpx.TransportError: no answer (refused, reset, timed out).
            SyncAuthError: the answer is 401 or 403.
        """
        return self._post("/v1/batches", body, MEDIA_TYPE)

    def post_heartbeat(self, heartbeat: DeviceHeartbeat) -> httpx.Response:
        """POST a heartbeat as JSON.

        Raises:
            httpx.TransportError: no answer.
            SyncAuthError: the answer is 401 or 403.
        """
        return self._post(
            "/v1/heartbeats", heartbeat.model_dump_json().encode(), "application/json"
        )

    def close(self) -> None:
        """Close the client if it was made here (a given client is the caller's)."""
        if self._own_client:
            self._client.close()

    def _post(self, path: str, body: bytes, media_type: str) -> httpx.Response:
        response = self._client.post(
            f"{self.server}{path}",
            content=body,
            headers={**self._auth, "Content-Type": media_type},
            timeout=self._timeout,
        )
        if response.status_code in (401, 403):
            raise SyncAuthError(
                f"the server {self.server} refused the device's token: HTTP "
                f"{response.status_code} on {path}: {error_message(response)}"
            )
        return response


def error_message(response: httpx.Response) -> str:
    """The one line an error answer carries: ``code: message`` from the server's
    ``{"error": {"code", "message"}}`` body, else the start of the body."""
    try:
        error = json.loads(response.content)["error"]
        text = f"{error['code']}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        text = response.content[:200].decode("utf-8", "replace") or response.reason_phrase
    return " ".join(str(text).split())[:300]


def retry_after_s(response: httpx.Response) -> float | None:
    """A ``Retry-After`` header in whole seconds; None when absent or an HTTP date."""
    value = response.headers.get("retry-after", "").strip()
    return float(value) if value.isdigit() else None


def describe_transport_error(exc: BaseException) -> str:
    """``ConnectError: [Errno 111] Connection refused``, on one line."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
