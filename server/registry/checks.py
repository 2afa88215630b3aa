"""The checks a model version's fields pass before the registry stores them, and the error a
registration that contradicts the stored versions raises."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import numpy as np

from curator.errors import InvalidInputError

__all__ = ["MAX_METRICS", "RegistryConflict", "check_metrics", "check_snapshot", "check_version"]

MAX_METRICS = 64
"""The most metrics one version may carry."""
_VERSION = re.compile(r"[^\x00-\x1f\x7f/\\]{1,128}")
_SNAPSHOT = re.compile(r"[^\x00-\x1f\x7f]{1,200}")
_METRIC = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")


class RegistryConflict(InvalidInputError):
    """A version or snapshot already registered with other bytes (answered 409 over HTTP)."""


def check_metrics(metrics: Mapping[str, float] | None) -> dict[str, float]:
    """``metrics`` as a plain dict of finite floats, checked.

    Raises:
        InvalidInputError: not a mapping, more than :data:`MAX_METRICS` entries, a name that is
            not 1-64 characters ``[A-Za-z_][A-Za-z0-9_.-]*``, or a value that is not a finite
            real number (bools refused).
    """
    if metrics is None:
        return {}
    if not isinstance(metrics, Mapping):
        raise InvalidInputError(f"metrics must be a mapping of name to number, got {metrics!r}")
    if len(metrics) > MAX_METRICS:
        raise InvalidInputError(f"at most {MAX_METRICS} metrics, got {len(metrics)}")
    clean: dict[str, float] = {}
    for name, value in metrics.items():
        if not isinstance(name, str) or not _METRIC.fullmatch(name):
            raise InvalidInputError(
                f"metric name must be 1-64 characters [A-Za-z_][A-Za-z0-9_.-]*, got {name!r}"
            )
        if isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.number):
            raise InvalidInputError(f"metric {name!r} must be a number, got {value!r}")
        number = float(value)
        if not math.isfinite(number):
            raise InvalidInputError(f"metric {name!r} must be finite, got {value!r}")
        clean[name] = number
    return clean


def check_version(value: str, name: str) -> str:
    """``value`` when it is a valid model version name (``name`` is what the error calls it).

    Raises:
        InvalidInputError: not 1-128 printable characters without ``/`` or ``\\``.
    """
    if not isinstance(value, str) or not _VERSION.fullmatch(value):
        raise InvalidInputError(
            f"{name} must be 1-128 printable characters without '/' or '\\', got {value!r}"
        )
    return value


def check_snapshot(value: str | None) -> str | None:
    """``value`` when it is None or a valid dataset snapshot key.

    Raises:
        InvalidInputError: not 1-200 printable characters.
    """
    if value is not None and (not isinstance(value, str) or not _SNAPSHOT.fullmatch(value)):
        raise InvalidInputError(f"snapshot_key must be 1-200 printable characters, got {value!r}")
    return value
