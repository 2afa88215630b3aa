from __future__ import annotations

import gzip
import hashlib
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from curator.data.fashion_mnist import (
    CLASS_NAMES,
    DEBIAN_DIR,
    FILES,
    IDX_SHA256,
    SHA256,
    find_fashion_mnist,
    load_fashion_mnist,
)
from curator.data.idx import encode_idx
from curator.errors import DatasetError, InvalidInputError

Serve = Callable[[Path], tuple[str, list[str]]]
WriteSplit = Callable[..., tuple[np.ndarray, np.ndarray]]

ALL_FILES = [name for pair in FILES.values() for name in pair]
debian = pytest.mark.skipif(
    not all((DEBIAN_DIR / n).is_file() for n in ALL_FILES),
    reason=f"Fashion-MNIST not in {DEBIAN_DIR} (apt-get install dataset-fashion-mnist)",
)

# The md5 sums Zalando publishes for the official .gz files (README of
# github.com/zalandoresearch/fashion-mnist), and the gzip header fields of those files.
OFFICIAL_MD5 = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
OFFICIAL_MTIME = {"train": 1504176606, "t10k": 1504176627}


def _official_bytes(name: str) -> bytes:
    """The official .gz file rebuilt from Debian's copy.

    Debian's files hold the same deflate stream; strip-nondeterminism dropped the stored file
    name (gzip FNAME) and reset the timestamp. Putting both back gives the official bytes.
    """
    debian_bytes = (DEBIAN_DIR / name).read_bytes()
    assert debian_bytes[:4] == b"\x1f\x8b\x08\x00"  # deflate, no flags
    mtime = OFFICIAL_MTIME[name.split("-")[0]]
    header = b"\x1f\x8b\x08\x08" + struct.pack("<I", mtime) + b"\x00\x03"
    return header + name.removesuffix(".gz").encode() + b"\x00" + debian_bytes[10:]


@debian
@pytest.mark.parametrize(("split", "n"), [("train", 60000), ("test", 10000)])
def test_debian_copy_loads_in_full(split: str, n: int) -> None:
    images, labels = load_fashion_mnist(split)  # type: ignore[arg-type]
    assert images.shape == (n, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (n,) and labels.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(labels, minlength=10), [n // 10] * 10)
    assert 0 < images.mean() < 255 and images.max() == 255
    assert find_fashion_mnist(split) == tuple(DEBIAN_DIR / f for f in FILES[split])  # type: ignore[arg-type]


@debian
@pytest.mark.parametrize("name", ALL_FILES)
def test_hard_coded_checksums_are_the_official_files(name: str) -> None:
    official = _official_bytes(name)
    assert hashlib.md5(official).hexdigest() == OFFICIAL_MD5[name]
    assert hashlib.sha256(official).hexdigest() == SHA256[name]
    payload = gzip.decompress((DEBIAN_DIR / name).read_bytes())
    assert payload == gzip.decompress(official)
    assert hashlib.sha256(payload).hexdigest() == IDX_SHA256[name.removesuffix(".gz")]


@debian
def test_download_of_the_official_files_passes_the_default_checksums(
    tmp_path: Path, http_server: Serve
) -> None:
    served = tmp_path / "mirror"
    served.mkdir()
    for name in FILES["test"]:
        (served / name).write_bytes(_official_bytes(name))
    base, requests = http_server(served)
    cache = tmp_path / "cache"
    images, labels = load_fashion_mnist(
        "test", download=True, cache_dir=cache, url=base, system_dir=None
    )
    assert sorted(requests) == sorted(f"/{n}" for n in FILES["test"])
    assert sorted(p.name for p in cache.iterdir()) == sorted(FILES["test"])
    debian_images, debian_labels = load_fashion_mnist("test")
    np.testing.assert_array_equal(images, debian_images)
    np.testing.assert_array_equal(labels, debian_labels)


def test_fixture_download_with_given_checksums(
    tmp_path: Path, http_server: Serve, write_split: WriteSplit
) -> None:
    images, labels = write_split(tmp_path / "mirror", "train", 7, seed=1)
    base, requests = http_server(tmp_path / "mirror")
    checksums = {
        n: hashlib.sha256((tmp_path / "mirror" / n).read_bytes()).hexdigest()
        for n in FILES["train"]
    }
    cache = tmp_path / "cache"
    kwargs = {"cache_dir": cache, "url": base, "system_dir": None, "checksums": checksums}
    got = load_fashion_mnist("train", download=True, **kwargs)  # type: ignore[arg-type]
    np.testing.assert_array_equal(got[0], images)
    np.testing.assert_array_equal(got[1], labels)
    assert len(requests) == 2
    again = load_fashion_mnist("train", **kwargs)  # type: ignore[arg-type]
    np.testing.assert_array_equal(again[0], images)
    assert len(requests) == 2  # served from the cache, not downloaded again


def test_checksum_mismatch_raises_and_leaves_no_file(
    tmp_path: Path, http_server: Serve, write_split: WriteSplit
) -> None:
    write_split(tmp_path / "mirror", "t10k", 3, seed=2)
    base, _ = http_server(tmp_path / "mirror")
    cache = tmp_path / "cache"
    # the default checksums are the official files', which these fixtures are not
    with pytest.raises(DatasetError, match=f"sha256 mismatch for {base}t10k-images-idx3-ubyte.gz"):
        load_fashion_mnist("test", download=True, cache_dir=cache, url=base, system_dir=None)
    assert list(cache.iterdir()) == []
    with pytest.raises(DatasetError, match="no sha256 known for t10k-images"):
        load_fashion_mnist(
            "test", download=True, cache_dir=cache, url=base, system_dir=None, checksums={"x": "0"}
        )


def test_only_missing_files_are_downloaded(
    tmp_path: Path, http_server: Serve, write_split: WriteSplit
) -> None:
    _, labels = write_split(tmp_path / "mirror", "t10k", 4, seed=3)
    cache = tmp_path / "cache"
    cache.mkdir()
    name_images, name_labels = FILES["test"]
    (cache / name_images).write_bytes((tmp_path / "mirror" / name_images).read_bytes())
    base, requests = http_server(tmp_path / "mirror")
    digest = hashlib.sha256((tmp_path / "mirror" / name_labels).read_bytes()).hexdigest()
    got = load_fashion_mnist(
        "test",
        download=True,
        cache_dir=cache,
        url=base,
        system_dir=None,
        checksums={name_labels: digest},
    )
    assert requests == [f"/{name_labels}"]
    np.testing.assert_array_equal(got[1], labels)


def test_root_comes_first_and_raw_files_work(tmp_path: Path, write_split: WriteSplit) -> None:
    images, labels = write_split(tmp_path / "root", "train", 5, seed=4, compress=False)
    write_split(tmp_path / "system", "train", 6, seed=5)
    write_split(tmp_path / "cache", "train", 8, seed=6)
    kwargs = {"system_dir": tmp_path / "system", "cache_dir": tmp_path / "cache"}
    got_images, got_labels = load_fashion_mnist("train", root=tmp_path / "root", **kwargs)  # type: ignore[arg-type]
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)
    assert len(load_fashion_mnist("train", root=tmp_path / "none", **kwargs)[0]) == 6  # type: ignore[arg-type]
    assert len(load_fashion_mnist("train", cache_dir=tmp_path / "cache", system_dir=None)[0]) == 8


def test_a_folder_with_half_a_split_is_passed_over(tmp_path: Path, write_split: WriteSplit) -> None:
    write_split(tmp_path / "root", "train", 5, seed=4)
    (tmp_path / "root" / FILES["train"][1]).unlink()
    write_split(tmp_path / "cache", "train", 8, seed=6)
    images, _ = load_fashion_mnist(
        "train", root=tmp_path / "root", cache_dir=tmp_path / "cache", system_dir=None
    )
    assert len(images) == 8


def test_not_found_says_where_it_looked_and_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as err:
        load_fashion_mnist(
            "test", root=tmp_path / "a", system_dir=tmp_path / "b", cache_dir=tmp_path / "c"
        )
    message = str(err.value)
    for expected in (
        "t10k-images-idx3-ubyte.gz",
        str(tmp_path / "a"),
        str(tmp_path / "b"),
        str(tmp_path / "c"),
        "apt-get install dataset-fashion-mnist",
        "download=True",
    ):
        assert expected in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("images", "labels", "message"),
    [
        (
            np.zeros((3, 27, 28), np.uint8),
            np.zeros(3, np.uint8),
            r"shape \(27, 28\), expected uint8",
        ),
        (
            np.zeros((3, 28, 28), np.uint8),
            np.zeros(2, np.uint8),
            "holds 2 uint8 labels for 3 images",
        ),
        (
            np.zeros((3, 28, 28), np.uint8),
            np.array([0, 10, 1], np.uint8),
            r"label 10, outside \[0, 10\)",
        ),
        (np.zeros((2, 28, 28), np.int32), np.zeros(2, np.uint8), "int32 images"),
    ],
)
def test_inconsistent_files_are_named(
    tmp_path: Path, images: np.ndarray, labels: np.ndarray, message: str
) -> None:
    (tmp_path / "train-images-idx3-ubyte").write_bytes(encode_idx(images))
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(encode_idx(labels))
    with pytest.raises(DatasetError, match=message):
        load_fashion_mnist("train", root=tmp_path, system_dir=None, cache_dir=tmp_path / "c")


def test_truncated_file_is_named(tmp_path: Path, write_split: WriteSplit) -> None:
    write_split(tmp_path, "train", 50, seed=7)
    path = tmp_path / FILES["train"][0]
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DatasetError, match=f"{path} is a truncated or corrupt gzip"):
        load_fashion_mnist("train", root=tmp_path, system_dir=None, cache_dir=tmp_path / "c")


def test_unknown_split_lists_the_valid_ones() -> None:
    with pytest.raises(InvalidInputError, match="'validation'; valid: train, test"):
        load_fashion_mnist("validation")  # type: ignore[arg-type]
    assert isinstance(InvalidInputError("x"), ValueError)


def test_class_names() -> None:
    assert (
        len(CLASS_NAMES) == 10
        and CLASS_NAMES[0] == "T-shirt/top"
        and CLASS_NAMES[9] == "Ankle boot"
    )
