"""The class names of a model version, which labels are validated against.

The catalog keeps no class names from uploads (a frame carries ``predicted_class`` and
``class_probabilities`` only), so the names come from, in order:

1. ``model_class_names``: names registered for the version with :func:`register_class_names`
   (by the model registry when it records a version, from its ``curator.class_names``);
2. otherwise the number of classes in the version's stored probabilities, named by index:
   ``"0"``, ``"1"``, ... ``"C-1"``;
3. otherwise none (an embedding-only model with nothing registered): no label is valid.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import datetime

from curator.errors import InvalidInputError
from server.catalog.answers import iso
from server.db import atomic

__all__ = ["class_names", "register_class_names"]


def class_names(conn: sqlite3.Connection, model_version: str | None) -> tuple[str, ...]:
    """The class names of ``model_version`` in class-index order; empty when unknown."""
    if model_version is None:
        return ()
    row = conn.execute(
        "SELECT class_names FROM model_class_names WHERE model_version = ?", (model_version,)
    ).fetchone()
    if row is not None:
        return tuple(json.loads(row[0]))
    width = conn.execute(
        "SELECT json_array_length(class_probabilities) FROM frames"
        " WHERE model_version = ? AND class_probabilities IS NOT NULL LIMIT 1",
        (model_version,),
    ).fetchone()
    return () if width is None else tuple(str(i) for i in range(int(width[0])))


def register_class_names(
    conn: sqlite3.Connection, model_version: str, names: Sequence[str], now: datetime
) -> None:
    """Record (or replace) the class names of ``model_version``.

    Raises:
        InvalidInputError: an empty version, fewer than two names, a name that is empty or not
            a string, or repeated names.
    """
    if not isinstance(model_version, str) or not model_version.strip():
        raise InvalidInputError(f"model_version must be a non-empty string, got {model_version!r}")
    clean = list(names) if not isinstance(names, str) else [names]
    if len(clean) < 2 or any(not isinstance(n, str) or not n.strip() for n in clean):
        raise InvalidInputError(f"class names must be >= 2 non-empty strings, got {clean!r}")
    if len(set(clean)) != len(clean):
        raise InvalidInputError(f"class names must be unique, got {clean!r}")
    with atomic(conn) as c:
        c.execute(
            "INSERT INTO model_class_names (model_version, class_names, recorded_at)"
            " VALUES (?, ?, ?) ON CONFLICT (model_version) DO UPDATE SET"
            " class_names = excluded.class_names, recorded_at = excluded.recorded_at",
            (model_version, json.dumps(clean), iso(now, "now")),
        )
