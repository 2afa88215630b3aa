"""Small named JSON states kept in the buffer file, and the embeddings it holds.

The selector saves its resumable state here (the streaming budget, where it was in a file
source) so a restart carries on instead of starting over; and it seeds its recent-novelty set
from the embeddings of the frames still buffered. Both live in the buffer's file, under its
lock, so there is one file to back up and one to lose.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import numpy.typing as npt

from edge_selector.buffer_store import BufferFile, DiskFull

__all__ = ["load_state", "recent_embeddings", "save_state"]

_SAVE = (
    "INSERT INTO state (name, value, saved_at) VALUES (?, ?, ?)"
    " ON CONFLICT (name) DO UPDATE SET value = excluded.value, saved_at = excluded.saved_at"
)


def save_state(file: BufferFile, name: str, value: dict[str, Any], saved_at: str) -> bool:
    """Write ``value`` (JSON data) under ``name``; False when the disk is full (nothing written).

    Raises:
        TypeError, ValueError: ``value`` is not JSON data (NaN included).
    """
    text = json.dumps(value, allow_nan=False, separators=(",", ":"))
    try:
        with file.transaction() as c:
            c.execute(_SAVE, (name, text, saved_at))
    except DiskFull:
        file.count_disk_full(dropped=False)
        return False
    return True


def load_state(file: BufferFile, name: str) -> dict[str, Any] | None:
    """The value saved under ``name``, or None."""
    row = file.conn.execute("SELECT value FROM state WHERE name = ?", (name,)).fetchone()
    if row is None:
        return None
    value = json.loads(row[0])
    return value if isinstance(value, dict) else None


def recent_embeddings(file: BufferFile, model_version: str, limit: int) -> npt.NDArray[np.float32]:
    """The newest ``limit`` buffered embeddings of ``model_version``, oldest first.

    Embeddings of another width than the newest one's are skipped (a model replaced by one of
    the same version name would otherwise mix spaces).
    """
    rows = file.conn.execute(
        "SELECT embedding FROM frames WHERE model_version = ? ORDER BY device_seq DESC LIMIT ?",
        (model_version, limit),
    ).fetchall()
    if not rows:
        return np.empty((0, 0), np.float32)
    width = len(rows[0][0])
    blobs = [r[0] for r in reversed(rows) if len(r[0]) == width]
    return np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(blobs), width // 4).copy()
