"""download_verified against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest

from curator.data.download import download_verified
from curator.errors import DatasetError

Serve = Callable[[Path], tuple[str, list[str]]]


def _served(tmp_path: Path, http_server: Serve, content: bytes) -> tuple[str, list[str], str]:
    served = tmp_path / "served"
    served.mkdir()
    (served / "blob.bin").write_bytes(content)
    base, requests = http_server(served)
    return base + "blob.bin", requests, hashlib.sha256(content).hexdigest()


def test_matching_checksum_gives_the_file_its_name(tmp_path: Path, http_server: Serve) -> None:
    content = bytes(range(256)) * 5000  # > 1 MiB, so several chunks
    url, requests, digest = _served(tmp_path, http_server, content)
    dest = tmp_path / "cache" / "sub" / "blob.bin"
    assert download_verified(url, dest, digest.upper()) == dest
    assert dest.read_bytes() == content
    assert sorted(p.name for p in dest.parent.iterdir()) == ["blob.bin"]
    assert requests == ["/blob.bin"]


def test_checksum_mismatch_leaves_nothing_behind(tmp_path: Path, http_server: Serve) -> None:
    url, _, digest = _served(tmp_path, http_server, b"served bytes")
    cache = tmp_path / "cache"
    wrong = hashlib.sha256(b"other bytes").hexdigest()
    with pytest.raises(
        DatasetError, match=f"sha256 mismatch for {url}: expected {wrong}, got {digest}"
    ):
        download_verified(url, cache / "blob.bin", wrong)
    assert list(cache.iterdir()) == []


def test_an_existing_file_is_not_replaced_by_a_bad_download(
    tmp_path: Path, http_server: Serve
) -> None:
    url, _, _ = _served(tmp_path, http_server, b"new bytes")
    dest = tmp_path / "blob.bin"
    dest.write_bytes(b"old bytes")
    with pytest.raises(DatasetError, match="mismatch"):
        download_verified(url, dest, "0" * 64)
    assert dest.read_bytes() == b"old bytes"


def test_http_errors_and_refused_connections_are_dataset_errors(
    tmp_path: Path, http_server: Serve
) -> None:
    url, _, digest = _served(tmp_path, http_server, b"x")
    cache = tmp_path / "cache"
    with pytest.raises(DatasetError, match=r"cannot download .*missing\.bin: HTTP 404"):
        download_verified(url.replace("blob.bin", "missing.bin"), cache / "m.bin", digest)
    # a port nobody listens on: bind one, close it, then connect
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DatasetError, match=f"cannot download http://127.0.0.1:{port}/"):
        download_verified(f"http://127.0.0.1:{port}/blob.bin", cache / "b.bin", digest, timeout=5)
    with pytest.raises(DatasetError, match="cannot download"):
        download_verified("not a url", cache / "c.bin", digest)
    assert list(cache.iterdir()) == []
