"""Shared fixtures of the edge tests: a real tmpfs of a chosen size (we run as root in CI)."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

Tmpfs = Callable[[Path, int], AbstractContextManager[Path]]


@contextlib.contextmanager
def _tmpfs(path: Path, size: int) -> Iterator[Path]:
    """A tmpfs of ``size`` bytes mounted at ``path`` (created); skips the test if mounting is
    not permitted here."""
    path.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.fixture
def tmpfs() -> Tmpfs:
    """``tmpfs(path, size)``: a context manager mounting a tmpfs of ``size`` bytes at ``path``."""
    return _tmpfs
