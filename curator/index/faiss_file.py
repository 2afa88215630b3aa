"""The single-file format of a saved :class:`~curator.index.FaissIndex`.

Layout, in order: the magic line ``CURATOR-FAISS-INDEX/1``; a little-endian uint64 length and
that many bytes of JSON settings; the position -> id array as ``.npy`` (int64, ``-1`` for a
tombstone); the FAISS index as ``faiss.write_index`` writes it. Files are written whole to a temp
file and moved into place (:func:`curator.index.base.atomic_write`).
"""

from __future__ import annotations

import json
import os
import struct
from typing import IO, Any

import numpy as np

from curator._optional import require
from curator.errors import InvalidInputError
from curator.index.base import IdArray, open_index_file

__all__ = ["MAGIC", "read_faiss_file", "write_faiss_file"]

MAGIC = b"CURATOR-FAISS-INDEX/1\n"


def write_faiss_file(f: IO[bytes], settings: dict[str, Any], labels: IdArray, index: Any) -> None:
    """Write ``settings`` (JSON-able), ``labels`` ``(ntotal,)`` and the FAISS ``index`` to ``f``."""
    faiss = require("faiss", extra="server")
    header = json.dumps(settings).encode()
    f.write(MAGIC + struct.pack("<Q", len(header)) + header)
    np.save(f, np.asarray(labels, np.int64), allow_pickle=False)
    faiss.write_index(index, faiss.PyCallbackIOWriter(f.write))


def read_faiss_file(path: str | os.PathLike[str]) -> tuple[dict[str, Any], IdArray, Any]:
    """``(settings, labels, faiss_index)`` read from a file written by :func:`write_faiss_file`.

    Raises:
        InvalidInputError: the file is missing, truncated or not in this format.
        MissingDependencyError: faiss is not installed (extra ``server``).
    """
    faiss = require("faiss", extra="server")
    where = os.fspath(path)
    with open_index_file(path, "FaissIndex") as f:
        if f.read(len(MAGIC)) != MAGIC:
            raise InvalidInputError(f"{where!r} is not a saved FaissIndex (bad magic)")
        try:
            (size,) = struct.unpack("<Q", f.read(8))
            settings = json.loads(f.read(size))
            labels = np.load(f, allow_pickle=False)
            index = faiss.read_index(faiss.PyCallbackIOReader(f.read))
        except (ValueError, struct.error, RuntimeError) as exc:
            raise InvalidInputError(f"{where!r} is not a saved FaissIndex: {exc}") from exc
    if not isinstance(settings, dict):
        raise InvalidInputError(f"{where!r} is not a saved FaissIndex: bad settings header")
    if labels.dtype != np.int64 or labels.shape != (index.ntotal,):
        raise InvalidInputError(
            f"{where!r} is not a saved FaissIndex: {labels.shape} ids of dtype {labels.dtype} "
            f"for {index.ntotal} vectors; expected one int64 id per vector"
        )
    return settings, labels, index
