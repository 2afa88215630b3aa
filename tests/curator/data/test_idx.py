from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from curator.data.idx import IDX_TYPES, encode_idx, read_idx
from curator.errors import DatasetError, InvalidInputError

dtypes = st.sampled_from([np.dtype(v).newbyteorder("=") for v in IDX_TYPES.values()])


@settings(max_examples=30)
@given(
    arrays(
        dtypes,
        st.lists(st.integers(0, 5), min_size=1, max_size=4).map(tuple),
        elements={"allow_nan": False},
    ),
    st.booleans(),
)
def test_encode_then_read_round_trips(array: np.ndarray, compress: bool) -> None:
    import tempfile

    data = encode_idx(array)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "x.idx"
        path.write_bytes(gzip.compress(data) if compress else data)
        back = read_idx(path, ndim=array.ndim)
    assert back.dtype == array.dtype.newbyteorder("=") and back.shape == array.shape
    np.testing.assert_array_equal(back, array)
    assert back.flags.writeable


def test_header_is_big_endian_as_the_format_says(tmp_path: Path) -> None:
    data = encode_idx(np.arange(6, dtype=np.uint8).reshape(2, 3))
    assert data[:12] == bytes([0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3])
    assert encode_idx(np.array([1], np.int32))[4 + 4 :] == b"\x00\x00\x00\x01"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "bad magic number"),
        (b"GIF89a....", "bad magic number"),
        (bytes([0, 0, 0x42, 1, 0, 0, 0, 1, 7]), "unknown IDX element type 0x42"),
        (bytes([0, 0, 8, 3, 0, 0, 0, 2]), "truncated inside its header"),
        (bytes([0, 0, 8, 1, 0, 0, 0, 5, 1, 2]), "is truncated: 10 bytes for shape \\(5,\\)"),
        (bytes([0, 0, 8, 1, 0, 0, 0, 1, 1, 2]), "longer than its header says"),
    ],
)
def test_malformed_files_name_the_file_and_the_problem(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "bad-idx1-ubyte"
    path.write_bytes(content)
    with pytest.raises(DatasetError, match=message) as err:
        read_idx(path)
    assert str(path) in str(err.value)


def test_truncated_gzip_names_the_file(tmp_path: Path) -> None:
    data = gzip.compress(encode_idx(np.arange(5000, dtype=np.int32)))
    path = tmp_path / "x-idx1-ubyte.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match=f"{path}.*truncated or corrupt gzip"):
        read_idx(path)


def test_wrong_number_of_dimensions_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "x"
    path.write_bytes(encode_idx(np.zeros((2, 2), np.uint8)))
    with pytest.raises(DatasetError, match="has 2 dimension\\(s\\), expected 3"):
        read_idx(path, ndim=3)
    with pytest.raises(DatasetError, match=r"cannot read .*absent"):
        read_idx(tmp_path / "absent")


def test_encode_rejects_dtypes_without_a_type_code() -> None:
    with pytest.raises(InvalidInputError, match="uint16 has no IDX type code"):
        encode_idx(np.zeros(3, np.uint16))


def test_a_header_whose_size_overflows_int64_is_a_dataset_error(tmp_path: Path) -> None:
    import struct

    path = tmp_path / "huge-idx3-ubyte"
    path.write_bytes(bytes([0, 0, 8, 3]) + struct.pack(">III", 2**31, 2**31, 4))
    with pytest.raises(DatasetError, match="truncated"):
        read_idx(path)
