"""Vector indexes: cosine top-k search over embeddings with caller-chosen int64 ids.

- :class:`VectorIndex`: the interface (add, search, remove, contains, save/load).
- :class:`BruteForceIndex`: exact numpy search, the oracle the others are tested against.
- :class:`FaissIndex`: FAISS, exact flat below a size threshold and HNSW above it.
- :func:`make_index` / :func:`load_index`: pick an implementation by name or by saved file.

Importing this package does not import faiss; :class:`FaissIndex` imports it when constructed.
Keep one index per embedding model version: vectors from two models are not comparable.
"""

from curator.index.base import VectorIndex
from curator.index.brute import BruteForceIndex
from curator.index.factory import INDEX_KINDS, load_index, make_index
from curator.index.faiss_index import FAISS_KINDS, FaissIndex, openmp_threads

__all__ = [
    "FAISS_KINDS",
    "INDEX_KINDS",
    "BruteForceIndex",
    "FaissIndex",
    "VectorIndex",
    "load_index",
    "make_index",
    "openmp_threads",
]
