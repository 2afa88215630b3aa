"""Ingest: one decoded upload batch in, one answer per frame out (docs/ingest.md).

- :class:`IngestService`: authorise, check each frame, exact then near dedup under the model
  version's lock, blobs, then the catalog and the warehouse outbox in one transaction, then
  the dedup index. ``IngestService.open(data_dir)`` opens every store from one folder;
  :func:`restore_dedup` rebuilds the indexes from a snapshot plus the catalog.
- :mod:`server.ingest.warehouse_rows`: the ``frames`` and ``dedup_decisions`` outbox rows.
"""

from server.ingest.service import IngestService, restore_dedup

__all__ = ["IngestService", "restore_dedup"]
