"""The IDX file format of MNIST and Fashion-MNIST, read with numpy.

An IDX file is a 4-byte magic number ``00 00 TT DD`` (``TT`` the element type, ``DD`` the number
of dimensions), ``DD`` big-endian uint32 sizes, then the elements, big-endian, row-major. The
files are often gzipped; :func:`read_idx` recognises gzip by its magic bytes, not by the name.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path

import numpy as np

from curator.errors import DatasetError, InvalidInputError

__all__ = ["IDX_TYPES", "encode_idx", "read_idx"]

IDX_TYPES: dict[int, str] = {
    0x08: ">u1",
    0x09: ">i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}
"""IDX type code to numpy dtype (big-endian)."""

_GZIP_MAGIC = b"\x1f\x8b"


def _parse(data: bytes, where: str, ndim: int | None) -> np.ndarray:
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DatasetError(f"{where} is not an IDX file (bad magic number {data[:4].hex()!r})")
    code, dims = data[2], data[3]
    if code not in IDX_TYPES:
        raise DatasetError(f"{where} has unknown IDX element type 0x{code:02x}")
    if ndim is not None and dims != ndim:
        raise DatasetError(f"{where} has {dims} dimension(s), expected {ndim}")
    header = 4 + 4 * dims
    if len(data) < header:
        raise DatasetError(f"{where} is truncated inside its header")
    shape = tuple(int(s) for s in np.frombuffer(data, ">u4", count=dims, offset=4))
    dtype = np.dtype(IDX_TYPES[code])
    expected = header + math.prod(shape) * dtype.itemsize  # Python ints: no overflow
    if len(data) != expected:
        state = "truncated" if len(data) < expected else "longer than its header says"
        raise DatasetError(
            f"{where} is {state}: {len(data)} bytes for shape {shape}, expected {expected}"
        )
    arr = np.frombuffer(data, dtype, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("="))


def read_idx(path: str | os.PathLike[str], *, ndim: int | None = None) -> np.ndarray:
    """Read an IDX file, gzipped or raw.

    Args:
        path: the file.
        ndim: the number of dimensions the file must have, or ``None`` for any.

    Returns:
        The array in native byte order (a fresh, writable copy).

    Raises:
        DatasetError: the file cannot be read, is a broken gzip stream, has a bad magic number,
            another number of dimensions, or a size that disagrees with its header; the message
            names the file.
    """
    where = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise DatasetError(f"cannot read {where}: {exc.strerror or exc}") from exc
    if data[:2] == _GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise DatasetError(f"{where} is a truncated or corrupt gzip file: {exc}") from exc
    return _parse(data, where, ndim)


def encode_idx(array: np.ndarray) -> bytes:
    """The IDX bytes of ``array`` (uncompressed); the inverse of :func:`read_idx`.

    Raises:
        InvalidInputError: the dtype has no IDX type code.
    """
    codes = {np.dtype(v).newbyteorder("="): k for k, v in IDX_TYPES.items()}
    dtype = array.dtype.newbyteorder("=")
    valid = ", ".join(str(np.dtype(v)) for v in IDX_TYPES.values())
    if dtype not in codes:
        raise InvalidInputError(f"dtype {array.dtype} has no IDX type code; valid: {valid}")
    head = bytes([0, 0, codes[dtype], array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    return head + np.ascontiguousarray(array, dtype=IDX_TYPES[codes[dtype]]).tobytes()
