"""The uploader's heartbeat: :func:`send_heartbeat` posts one
:class:`curator.wire.DeviceHeartbeat` and counts how it went.

A heartbeat that fails (no answer, an answer other than a 200 ``HeartbeatAck``, or a heartbeat
callable that raised) is logged and counted as ``heartbeat_errors`` and never stops the uploads;
a refused token (401, 403) is raised like a refused batch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import httpx
from pydantic import ValidationError

from curator.wire import DeviceHeartbeat, HeartbeatAck
from edge_selector.sync_http import ServerLink, describe_transport_error, error_message
from edge_selector.sync_outcomes import SyncAuthError, SyncTally

__all__ = ["send_heartbeat"]

log = logging.getLogger("edge_selector.sync")


def send_heartbeat(
    link: ServerLink, heartbeat: Callable[[], DeviceHeartbeat], tally: SyncTally
) -> bool:
    """Post ``heartbeat()`` through ``link``; failures are logged and counted on ``tally``.

    Returns:
        Whether the server acknowledged it.

    Raises:
        SyncAuthError: the server answered 401 or 403 (counted as ``auth_errors``).
    """
    try:
        response = link.post_heartbeat(heartbeat())
    except SyncAuthError as exc:
        tally.add(str(exc), auth_errors=1)
        log.error("token refused", extra={"server": link.server, "error": str(exc)})
        raise
    except httpx.TransportError as exc:
        return _failed(link, tally, f"no answer: {describe_transport_error(exc)}")
    except Exception as exc:  # the callable's own failure must not stop the uploads
        log.exception("heartbeat not built", extra={"error": repr(exc)})
        return _failed(link, tally, f"not built: {type(exc).__name__}: {exc}")
    if response.status_code != 200:
        return _failed(link, tally, f"HTTP {response.status_code}: {error_message(response)}")
    try:
        HeartbeatAck.model_validate_json(response.content)
    except ValidationError:
        return _failed(link, tally, "the answer is not a HeartbeatAck")
    tally.add(heartbeats_sent=1)
    log.debug("heartbeat sent", extra={"server": link.server})
    return True


def _failed(link: ServerLink, tally: SyncTally, problem: str) -> bool:
    error = f"heartbeat to {link.server} failed: {problem}"
    tally.add(error, heartbeat_errors=1)
    log.warning("heartbeat failed", extra={"error": error})
    return False
