"""Fashion-MNIST: 70,000 labelled 28x28 gray images of 10 clothing classes (Xiao et al. 2017).

:func:`load_fashion_mnist` looks for the four standard IDX files (gzipped or not) in order:

1. ``root``, when given;
2. ``system_dir``, by default Debian's ``/usr/share/datasets/fashion-mnist/`` (package
   ``dataset-fashion-mnist``);
3. ``cache_dir``, by default ``~/.cache/curator/fashion-mnist``.

When no folder holds a split and ``download=True``, the official files are downloaded into the
cache, each checked against the sha256 in :data:`SHA256` before it is given its name.

Debian ships the same data in re-packed gzip files (``strip-nondeterminism`` removed the stored
file name and reset the timestamp), so the Debian ``.gz`` files have other checksums than the
official ones; their decompressed bytes (:data:`IDX_SHA256`) are identical. See docs/data.md.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

from curator.data.download import download_verified
from curator.data.idx import read_idx
from curator.errors import DatasetError, InvalidInputError

__all__ = [
    "CLASS_NAMES",
    "DEBIAN_DIR",
    "DEFAULT_URL",
    "FILES",
    "IDX_SHA256",
    "SHA256",
    "default_cache_dir",
    "find_fashion_mnist",
    "load_fashion_mnist",
]

CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
"""Label ``i`` is ``CLASS_NAMES[i]``."""

FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
"""Split to its (images, labels) file names."""

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")

DEFAULT_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
"""The official download location. S3 website endpoints serve plain HTTP only; the sha256
check, not the transport, guarantees the bytes."""


def _sha256sums(text: str) -> dict[str, str]:
    """File name to digest, from ``sha256sum`` output lines ``<digest>  <name>``."""
    return {name: digest for digest, name in (line.split() for line in text.strip().splitlines())}


SHA256 = _sha256sums("""
3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84  train-images-idx3-ubyte.gz
a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845  train-labels-idx1-ubyte.gz
346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073  t10k-images-idx3-ubyte.gz
67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5  t10k-labels-idx1-ubyte.gz
""")
"""sha256 of the official ``.gz`` files, checked on download."""

IDX_SHA256 = _sha256sums("""
c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888  train-images-idx3-ubyte
bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9  train-labels-idx1-ubyte
5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b  t10k-images-idx3-ubyte
0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34  t10k-labels-idx1-ubyte
""")
"""sha256 of the decompressed IDX files, the same for the official and the Debian copies."""

_IMAGE_SHAPE = (28, 28)

Split = Literal["train", "test"]
UInt8Array = npt.NDArray[np.uint8]


def default_cache_dir() -> Path:
    """``~/.cache/curator/fashion-mnist``, where downloads go unless told otherwise."""
    return Path.home() / ".cache" / "curator" / "fashion-mnist"


def _located(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / name.removesuffix(".gz")):
        if candidate.is_file():
            return candidate
    return None


def _split_files(split: str) -> tuple[str, str]:
    if split not in FILES:
        raise InvalidInputError(f"unknown Fashion-MNIST split {split!r}; valid: train, test")
    return FILES[split]


def find_fashion_mnist(
    split: Split = "train",
    *,
    root: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    system_dir: str | os.PathLike[str] | None = DEBIAN_DIR,
) -> tuple[Path, Path] | None:
    """The (images, labels) files of ``split`` in the first folder holding both, or None.

    Each file may be gzipped (``*.gz``) or raw (the same name without ``.gz``).

    Raises:
        InvalidInputError: unknown split.
    """
    names = _split_files(split)
    for folder in _search_path(root, system_dir, cache_dir):
        images, labels = (_located(folder, n) for n in names)
        if images is not None and labels is not None:
            return images, labels
    return None


def _search_path(
    root: str | os.PathLike[str] | None,
    system_dir: str | os.PathLike[str] | None,
    cache_dir: str | os.PathLike[str] | None,
) -> list[Path]:
    folders = [root, system_dir, cache_dir if cache_dir is not None else default_cache_dir()]
    return [Path(f).expanduser() for f in folders if f is not None]


def load_fashion_mnist(
    split: Split = "train",
    *,
    root: str | os.PathLike[str] | None = None,
    download: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
    url: str | None = None,
    system_dir: str | os.PathLike[str] | None = DEBIAN_DIR,
    checksums: Mapping[str, str] | None = None,
    timeout: float = 60.0,
) -> tuple[UInt8Array, UInt8Array]:
    """Load one split of Fashion-MNIST.

    Args:
        split: ``"train"`` (60,000 images) or ``"test"`` (10,000).
        root: a folder to look in first.
        download: fetch the official files into ``cache_dir`` when no folder has them.
        cache_dir: where downloads go and are looked for (default :func:`default_cache_dir`).
        url: base URL of the files (default :data:`DEFAULT_URL`); a mirror must serve the
            official bytes, since they are checked against ``checksums``.
        system_dir: the system-wide folder (default Debian's); ``None`` skips it.
        checksums: file name to expected sha256 of the downloaded file (default
            :data:`SHA256`).
        timeout: seconds for the connection and each read of a download.

    Returns:
        ``(images, labels)``: ``(N, 28, 28)`` uint8 and ``(N,)`` uint8 in ``[0, 10)``.

    Raises:
        InvalidInputError: unknown split.
        DatasetError: not found (the message says where it looked and how to get it), a
            download failed or its checksum differs, or a file is truncated or corrupt (the
            message names the file).
    """
    names = _split_files(split)
    found = find_fashion_mnist(split, root=root, cache_dir=cache_dir, system_dir=system_dir)
    if found is None:
        cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        if not download:
            looked = ", ".join(str(f) for f in _search_path(root, system_dir, cache_dir))
            raise DatasetError(
                f"Fashion-MNIST {split!r} files ({', '.join(names)}) not found in: {looked}. "
                "Install them with `apt-get install dataset-fashion-mnist`, or pass "
                "download=True to fetch the official files (sha256-checked) into "
                f"{cache}"
            )
        found = _download(names, cache, url or DEFAULT_URL, checksums or SHA256, timeout)
    images = read_idx(found[0], ndim=3)
    labels = read_idx(found[1], ndim=1)
    if images.dtype != np.uint8 or images.shape[1:] != _IMAGE_SHAPE:
        raise DatasetError(
            f"{found[0]} holds {images.dtype} images of shape {images.shape[1:]}, "
            f"expected uint8 {_IMAGE_SHAPE}"
        )
    if labels.dtype != np.uint8 or len(labels) != len(images):
        raise DatasetError(
            f"{found[1]} holds {len(labels)} {labels.dtype} labels for {len(images)} images in "
            f"{found[0]}"
        )
    if len(labels) and int(labels.max()) >= len(CLASS_NAMES):
        raise DatasetError(f"{found[1]} holds label {int(labels.max())}, outside [0, 10)")
    return images, labels


def _download(
    names: tuple[str, str], cache: Path, url: str, checksums: Mapping[str, str], timeout: float
) -> tuple[Path, Path]:
    paths = []
    for name in names:
        present = _located(cache, name)
        if present is not None:
            paths.append(present)
            continue
        if name not in checksums:
            raise DatasetError(f"no sha256 known for {name}; pass checksums={{{name!r}: ...}}")
        source = url.rstrip("/") + "/" + name
        paths.append(download_verified(source, cache / name, checksums[name], timeout=timeout))
    return paths[0], paths[1]
