"""The catalog: every frame the server answered for, in SQLite (WAL, synchronous=FULL).

- :class:`Catalog`: ``record`` (idempotent, all or nothing), ``get``/``get_many``,
  ``accepted_since`` (rebuild a dedup index per model version), ``max_seq``, ``counts``,
  ``frame_id_for_seq``, ``touch_device``; ``atomic()`` to share a transaction with other tables
  of the same file.
- :class:`FrameRow`: one answered frame; :meth:`FrameRow.from_record` builds it from a
  :class:`curator.wire.FrameRecord` and a decision, :meth:`FrameRow.to_result` gives the wire
  answer.
- :data:`CATALOG_MIGRATIONS`: the schema, as named migrations (:mod:`server.db`).

Schema, idempotency rules and durability are described in docs/server-storage.md.
"""

from server.catalog.rows import (
    DEDUP_METHODS,
    FRAME_STATUSES,
    DedupMethod,
    FrameRow,
    FrameStatus,
    IndexedEmbedding,
    check_device_id,
)
from server.catalog.schema import CATALOG_MIGRATIONS
from server.catalog.store import Catalog, DeviceRow

__all__ = [
    "CATALOG_MIGRATIONS",
    "DEDUP_METHODS",
    "FRAME_STATUSES",
    "Catalog",
    "DedupMethod",
    "DeviceRow",
    "FrameRow",
    "FrameStatus",
    "IndexedEmbedding",
    "check_device_id",
]
