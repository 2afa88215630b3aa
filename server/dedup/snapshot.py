"""The dedup snapshot directory: one file per index and a manifest that commits them.

Layout::

    manifest.json                 {"format": "curator.server.dedup/1",
                                   "versions": {model_version: {"file", "watermark",
                                                                "vectors", "dim"}}}
    <key>-<watermark>-<n>.index   a saved VectorIndex (curator.index save format)

``key`` is the first 16 hex digits of the sha256 of the model version, so any version string
makes a safe file name. A snapshot writes new index files first (each atomically), fsyncs the
directory, replaces ``manifest.json`` atomically, fsyncs again, and only then deletes files the
new manifest does not name. Whatever point a crash stops at, the manifest on disk names files
that exist and whose contents match its watermarks.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

from curator.index.base import atomic_write

__all__ = [
    "MANIFEST_NAME",
    "NO_WATERMARK",
    "fsync_directory",
    "index_file_name",
    "read_manifest",
    "remove_unnamed_files",
    "write_manifest",
]

logger = logging.getLogger("server.dedup")

MANIFEST_NAME = "manifest.json"
NO_WATERMARK = -1
"""The watermark of a version with nothing saved: catch-up then returns all its frames."""

_FORMAT = "curator.server.dedup/1"
_INDEX_FILE = re.compile(r"^[0-9a-f]{16}-(-1|\d+)-\d+\.index$")
_ENTRY_INTS = ("watermark", "vectors", "dim")

Manifest = dict[str, dict[str, Any]]
"""model version -> ``{"file", "watermark", "vectors", "dim"}``."""


def index_file_name(model_version: str, watermark: int, vectors: int) -> str:
    """The file name of a version's index holding ``vectors`` ids up to ``watermark``."""
    key = hashlib.sha256(model_version.encode()).hexdigest()[:16]
    return f"{key}-{watermark}-{vectors}.index"


def read_manifest(directory: Path, *, warn: bool = True) -> Manifest | None:
    """The manifest's entries, or None (logged when ``warn``) when it is missing or malformed."""
    path = directory / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_bytes())
        if manifest.get("format") != _FORMAT:
            raise ValueError(f"format is {manifest.get('format')!r}, expected {_FORMAT!r}")
        versions = manifest["versions"]
        for mv, e in versions.items():
            if not (
                isinstance(mv, str)
                and mv
                and isinstance(e["file"], str)
                and _INDEX_FILE.match(e["file"])
                and all(type(e[k]) is int for k in _ENTRY_INTS)
                and e["watermark"] >= NO_WATERMARK
            ):
                raise ValueError(f"malformed entry for {mv!r}: {e!r}")
    except FileNotFoundError:
        if warn:
            logger.warning("no dedup snapshot %s; every index is rebuilt from the catalog", path)
        return None
    except Exception as exc:  # any damage (bad JSON, bad bytes, wrong types): start empty
        if warn:
            logger.warning("dedup snapshot %s is unusable (%s); full catch-up", path, exc)
        return None
    return dict(versions)


def write_manifest(directory: Path, entries: Manifest) -> None:
    """Make the index files durable, then replace the manifest atomically and durably."""
    fsync_directory(directory)
    data = json.dumps({"format": _FORMAT, "versions": entries}, indent=1, sort_keys=True)

    def write(f: Any) -> None:
        f.write(data.encode())

    atomic_write(directory / MANIFEST_NAME, write)
    fsync_directory(directory)


def remove_unnamed_files(directory: Path, entries: Manifest) -> None:
    """Delete index files the manifest does not name, and temp files a crash left behind."""
    named = {e["file"] for e in entries.values()}
    for path in directory.iterdir():
        name = path.name
        if name.startswith(".") and name.endswith(".tmp"):  # atomic_write's ".<name>.<x>.tmp"
            inner = name[1:].rsplit(".", 2)[0]
            if inner == MANIFEST_NAME or _INDEX_FILE.match(inner):
                path.unlink(missing_ok=True)
        elif _INDEX_FILE.match(name) and name not in named:
            path.unlink(missing_ok=True)


def fsync_directory(directory: Path) -> None:
    """Make the renames in ``directory`` durable (files are fsynced by ``atomic_write``)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
