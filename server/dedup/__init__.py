"""Fleet-wide near-duplicate dedup: one vector index per embedding model version.

A frame is a near duplicate when the cosine similarity of its embedding to an accepted frame of
the same model version (from any device) is at least ``threshold``. Vectors of two model
versions are never compared (DESIGN.md, "Embedding spaces"): each version has its own index,
created at its first accepted frame with that frame's dimension. Exact duplicates (the same
sha256 ``frame_id``) are the catalog's business, before this; docs/dedup.md has both.

- :mod:`server.dedup.decisions`: :class:`DedupDecision` and the pure batch decision.
- :mod:`server.dedup.fleet`: :class:`FleetDedup`, the indexes, their locks, snapshot/restore.
- :mod:`server.dedup.snapshot`: the snapshot directory's files and manifest.

Decide, then commit: :meth:`FleetDedup.check` decides a whole batch and changes nothing;
:meth:`FleetDedup.accept` adds the frames the server committed. Ids are the catalog's
``ingest_seq``: non-negative int64, growing in commit order per model version.
"""

from server.dedup.decisions import SIMILARITY_TOLERANCE, DedupDecision
from server.dedup.fleet import DEDUP_HNSW, CatchUp, FleetDedup, IndexFactory, index_factory
from server.dedup.snapshot import MANIFEST_NAME, NO_WATERMARK

__all__ = [
    "DEDUP_HNSW",
    "MANIFEST_NAME",
    "NO_WATERMARK",
    "SIMILARITY_TOLERANCE",
    "CatchUp",
    "DedupDecision",
    "FleetDedup",
    "IndexFactory",
    "index_factory",
]
