"""The errors the server raises on purpose, translated to JSON 4xx/503 at the HTTP edge.

Hierarchy::

    ServerError
     ├── BadRequest            (400) malformed input the client can fix
     │    └── ImageRejected         an image that is not a valid JPEG/PNG within the limits
     ├── Unauthorized          (401) no valid token
     ├── Forbidden             (403) a valid token without the right role or device
     ├── PayloadTooLarge       (413) a body over the size limit
     ├── UnsupportedMediaType  (415) a body of another content type
     ├── NotFound              (404)
     ├── Unavailable           (503) a backing store is down; retry later
     │    └── WarehouseUnavailable  the warehouse (Snowflake) cannot be reached
     └── DataDirInUse          another server holds the data folder (at start; never HTTP)

``status_code`` on each class is the HTTP status the app answers with.
"""

from __future__ import annotations


class ServerError(Exception):
    """Base class of the server's own errors."""

    status_code = 500


class BadRequest(ServerError):
    status_code = 400


class ImageRejected(BadRequest):
    """An image failed validation; the message is the per-frame rejection reason."""


class Unauthorized(ServerError):
    status_code = 401


class Forbidden(ServerError):
    status_code = 403


class NotFound(ServerError):
    status_code = 404


class PayloadTooLarge(ServerError):
    status_code = 413


class UnsupportedMediaType(ServerError):
    status_code = 415


class Unavailable(ServerError):
    status_code = 503


class WarehouseUnavailable(Unavailable):
    """The warehouse cannot be reached now; writes stay in the outbox until it can."""


class DataDirInUse(ServerError):
    """Another server process holds the data folder's lock (:mod:`server.datadir`).

    Raised when a server starts, never answered over HTTP; the CLI prints it as one line and
    exits 1.
    """
