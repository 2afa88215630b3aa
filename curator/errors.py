"""The errors curator raises, in one place.

Hierarchy::

    CuratorError
     ├── InvalidInputError (also ValueError)   an array or argument with the wrong shape,
     │                                         dtype, NaN/inf or out-of-range values
     ├── ModelContractError                    an ONNX model that breaks the model contract
     ├── WireFormatError (also ValueError)     bytes or records that break curator.wire
     ├── DatasetError                          a data set missing, truncated or failing sha256
     ├── ApiError                              the server answered 4xx/5xx (curator.client);
     │                                         carries the status code and the JSON error
     └── MissingDependencyError (also ImportError)
                                               an optional extra is not installed; the message
                                               names the install command

Processes translate these at their edge: JSON 4xx on the server, log-and-backoff on the edge,
a one-line message and an exit code in a CLI.
"""

from __future__ import annotations


class CuratorError(Exception):
    """Base class of every error curator raises on purpose."""


class InvalidInputError(CuratorError, ValueError):
    """An input array or argument is malformed: wrong shape, dtype, NaN/inf, out of range."""


class ModelContractError(CuratorError):
    """An ONNX model does not satisfy the model contract (inputs, outputs, metadata)."""


class WireFormatError(CuratorError, ValueError):
    """Bytes or records that do not follow the ``curator.wire`` contract."""


class DatasetError(CuratorError):
    """A data set is missing, truncated or fails its checksum."""


class MissingDependencyError(CuratorError, ImportError):
    """An optional dependency (an extra) is not installed."""


class ApiError(CuratorError):
    """The curator server answered an error (4xx or 5xx) to :mod:`curator.client`.

    Attributes:
        status_code: the HTTP status.
        code: the server's error code (``error.code`` of its JSON body, e.g. ``unauthorized``),
            or ``http_<status>`` when the body is not the server's error JSON.
        detail: the server's JSON body as parsed (``{"error": {"code", "message"}}``), or the
            body text when it is not JSON.
        method, url: the request that failed.
    """

    def __init__(
        self, status_code: int, code: str, message: str, detail: object, method: str, url: str
    ) -> None:
        super().__init__(f"{method} {url}: HTTP {status_code} {code}: {message}")
        self.status_code = status_code
        self.code = code
        self.message = message
        self.detail = detail
        self.method = method
        self.url = url
