"""Make or load a :class:`~curator.index.VectorIndex` by name, without knowing its class."""

from __future__ import annotations

import os
from typing import Any

from curator.errors import InvalidInputError
from curator.index.base import VectorIndex, open_index_file
from curator.index.brute import BruteForceIndex
from curator.index.faiss_file import MAGIC
from curator.index.faiss_index import FaissIndex

__all__ = ["INDEX_KINDS", "load_index", "make_index"]

INDEX_KINDS = ("auto", "brute", "flat", "hnsw")
_ZIP_MAGIC = b"PK\x03\x04"


def make_index(kind: str, dim: int, **options: Any) -> VectorIndex:
    """A new, empty index.

    Args:
        kind: ``"brute"`` for :class:`BruteForceIndex`; ``"auto"``, ``"flat"`` or ``"hnsw"``
            for :class:`FaissIndex` of that kind.
        dim: dimension of the vectors.
        **options: passed to :class:`FaissIndex` (``hnsw_threshold``, ``m``, ...).

    Raises:
        ValueError: ``kind`` is not one of ``INDEX_KINDS``, or options given for ``"brute"``.
        InvalidInputError: ``dim`` or an option is out of range.
        MissingDependencyError: a FAISS kind without faiss installed (extra ``server``).
    """
    if kind not in INDEX_KINDS:
        raise ValueError(f"unknown index kind {kind!r}; valid kinds: {INDEX_KINDS}")
    if kind == "brute":
        if options:
            raise ValueError(f"BruteForceIndex takes no options, got {sorted(options)}")
        return BruteForceIndex(dim)
    return FaissIndex(dim, kind=kind, **options)  # type: ignore[arg-type]


def load_index(path: str | os.PathLike[str]) -> VectorIndex:
    """Load an index saved by any implementation's ``save``, recognised by its first bytes.

    Raises:
        InvalidInputError: the file is missing or not a saved index.
        MissingDependencyError: a saved FaissIndex without faiss installed (extra ``server``).
    """
    with open_index_file(path, "index") as f:
        head = f.read(len(MAGIC))
    if head == MAGIC:
        return FaissIndex.load(path)
    if head.startswith(_ZIP_MAGIC):
        return BruteForceIndex.load(path)
    raise InvalidInputError(f"{os.fspath(path)!r} is not a saved FaissIndex or BruteForceIndex")
