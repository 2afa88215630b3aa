"""The labeling errors that have no class in :mod:`server.errors`.

- :class:`LeaseConflict` (409): a lease that expired, was released or ended with a label, asked
  to renew or release. The app's handler answers any :class:`~server.errors.ServerError` with its
  ``status_code``, so this one is answered ``{"error": {"code": "lease_conflict", ...}}``.
- :class:`UnknownClassName`: a label whose class is not one of the model version's classes; the
  router answers 422 with the valid names.
"""

from __future__ import annotations

from collections.abc import Sequence

from curator.errors import InvalidInputError
from server.errors import ServerError

__all__ = ["LeaseConflict", "UnknownClassName"]


class LeaseConflict(ServerError):
    """The lease is no longer open (expired, released, or its frame was labeled)."""

    status_code = 409


class UnknownClassName(InvalidInputError):
    """A class name the frame's model version does not have.

    Attributes:
        class_name: the name given.
        valid: the model version's class names, in class-index order.
    """

    def __init__(self, class_name: str, model_version: str | None, valid: Sequence[str]) -> None:
        self.class_name = class_name
        self.valid = tuple(valid)
        names = ", ".join(repr(n) for n in self.valid) or "none known"
        super().__init__(
            f"class_name {class_name!r} is not a class of model version {model_version!r}; "
            f"valid: {names}"
        )
