"""Blob stores: one contract run against a real folder, fsspec's memory:// and file://."""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import server.blobs as blobs_module
from curator.errors import InvalidInputError
from server.blobs import (
    BlobStore,
    FsspecBlobStore,
    LocalBlobStore,
    blob_key,
    check_key,
    open_blob_store,
)
from server.errors import NotFound

JPEG = b"\xff\xd8\xff" + bytes(range(256)) * 4


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


class BlobStoreContract:
    """What every BlobStore does; subclasses provide the ``store`` fixture."""

    def test_put_returns_the_content_address_and_get_returns_the_bytes(
        self, store: BlobStore
    ) -> None:
        key = store.put(JPEG, "jpeg")
        digest = hashlib.sha256(JPEG).hexdigest()
        assert key == f"{digest[:2]}/{digest[2:4]}/{digest}.jpeg" == blob_key(JPEG, "jpeg")
        assert store.get(key) == JPEG
        assert store.exists(key)
        assert store.put(bytearray(JPEG), "jpeg") == key  # idempotent, bytes-likes welcome
        assert (
            store.put(b"", "bin") == blob_key(b"", "bin") and store.get(blob_key(b"", "bin")) == b""
        )

    def test_the_same_bytes_under_another_extension_are_another_key(self, store: BlobStore) -> None:
        assert store.put(JPEG, "jpeg") != store.put(JPEG, "jpg")

    def test_delete_and_missing_keys(self, store: BlobStore) -> None:
        key = store.put(JPEG, "jpeg")
        assert store.delete(key) is True
        assert store.delete(key) is False
        assert not store.exists(key)
        with pytest.raises(NotFound, match="no blob"):
            store.get(key)

    @pytest.mark.parametrize(
        "key",
        [
            "../../etc/passwd",
            "/etc/passwd",
            "ab/../../secret",
            "ab\\..\\..\\x",
            "C:/Windows/win.ini",
            f"{'0' * 2}/{'0' * 2}/../{'0' * 64}.jpeg",
        ],
    )
    def test_path_traversal_is_refused(self, store: BlobStore, key: str) -> None:
        for method in (store.get, store.exists, store.delete, store.url):
            with pytest.raises(InvalidInputError, match="path traversal"):
                method(key)

    @pytest.mark.parametrize(
        "key",
        [
            "",
            "ab/cd/xyz.jpeg",
            f"00/00/{'1' * 64}.jpeg",
            f"11/11/{'1' * 64}",
            f"11/11/{'1' * 64}.JPG",
        ],
    )
    def test_malformed_keys_are_refused(self, store: BlobStore, key: str) -> None:
        with pytest.raises(InvalidInputError, match="form"):
            store.get(key)

    @pytest.mark.parametrize("ext", ["", ".jpeg", "JPEG", "jp/eg", "a" * 11, "..", None])
    def test_bad_extensions_are_refused(self, store: BlobStore, ext: str) -> None:
        with pytest.raises(InvalidInputError, match="extension"):
            store.put(JPEG, ext)

    def test_data_must_be_bytes(self, store: BlobStore) -> None:
        with pytest.raises(InvalidInputError, match="bytes"):
            store.put("text", "txt")  # type: ignore[arg-type]

    def test_url_names_the_key(self, store: BlobStore) -> None:
        key = store.put(JPEG, "jpeg")
        assert store.url(key).endswith("/" + key)
        assert "://" in store.url(key)


class TestLocalBlobStore(BlobStoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> BlobStore:
        return LocalBlobStore(tmp_path / "blobs")

    def test_files_land_under_their_key_with_no_temporary_left(self, tmp_path: Path) -> None:
        store = LocalBlobStore(tmp_path / "blobs")
        keys = {store.put(JPEG + bytes([i]), "jpeg") for i in range(20)}
        files = _files(tmp_path / "blobs")
        assert [f.relative_to(tmp_path / "blobs").as_posix() for f in files] == sorted(keys)
        assert store.url(min(keys)) == (tmp_path / "blobs" / min(keys)).as_uri()

    def test_an_existing_blob_is_not_rewritten(self, tmp_path: Path) -> None:
        store = LocalBlobStore(tmp_path)
        key = store.put(JPEG, "jpeg")
        before = os.stat(tmp_path / key)
        store.put(JPEG, "jpeg")
        after = os.stat(tmp_path / key)
        assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)

    def test_a_batch_is_flushed_once_before_its_renames_and_once_after(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        store = LocalBlobStore(tmp_path)
        events: list[str] = []
        real_syncfs, real_replace = blobs_module._SYNCFS, os.replace
        if real_syncfs is None:
            pytest.skip("no syncfs in this C library; the fsync fallback is tested below")

        def syncfs(fd: int) -> int:
            staged = [p for p in tmp_path.rglob(".tmp-*") if p.read_bytes().startswith(JPEG)]
            events.append(f"syncfs with {len(staged)} whole temporaries")
            return real_syncfs(fd)

        def replace(src: str, dst: str) -> None:
            events.append("replace")
            real_replace(src, dst)

        monkeypatch.setattr(blobs_module, "_SYNCFS", syncfs)
        monkeypatch.setattr(os, "replace", replace)
        images = [JPEG + bytes([i]) for i in range(5)]
        keys = store.put_many([(image, "jpeg") for image in images + images[:2]])
        assert events == [
            "syncfs with 5 whole temporaries",
            *["replace"] * 5,
            "syncfs with 0 whole temporaries",
        ]
        assert keys == [blob_key(image, "jpeg") for image in images + images[:2]]
        assert [store.get(k) for k in keys[:5]] == images
        assert store.put_many([(images[0], "jpeg")]) == keys[:1] and len(events) == 7  # no write

    def test_without_syncfs_every_temporary_then_every_folder_is_fsynced(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        store = LocalBlobStore(tmp_path)
        events: list[tuple[str, str]] = []
        real_fsync, real_replace = os.fsync, os.replace

        def fsync(fd: int) -> None:
            events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
            real_fsync(fd)

        def replace(src: str, dst: str) -> None:
            events.append(("replace", str(dst)))
            real_replace(src, dst)

        monkeypatch.setattr(blobs_module, "_SYNCFS", None)
        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "replace", replace)
        keys = store.put_many([(JPEG + bytes([i]), "jpeg") for i in range(3)])
        kinds = [kind for kind, _ in events]
        first, last = kinds.index("replace"), len(kinds) - kinds[::-1].index("replace") - 1
        assert sum(".tmp-" in target for _, target in events[:first]) == 3  # data first
        assert [target for _, target in events[first : last + 1]] == [
            str(tmp_path / k) for k in keys
        ]
        synced_after = {target for _, target in events[last + 1 :]}
        for key in keys:  # the renames, and the new ab/ and ab/cd/ folders, made durable
            assert {
                str((tmp_path / key).parent),
                str((tmp_path / key).parent.parent),
            } <= synced_after
        assert str(tmp_path) in synced_after

    def test_a_failed_write_leaves_neither_blob_nor_temporary(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        store = LocalBlobStore(tmp_path)

        def broken_replace(src: str, dst: str) -> None:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(os, "replace", broken_replace)
        with pytest.raises(OSError, match="No space"):
            store.put(JPEG, "jpeg")
        assert _files(tmp_path) == []
        assert not store.exists(blob_key(JPEG, "jpeg"))


class TestFsspecMemoryBlobStore(BlobStoreContract):
    @pytest.fixture
    def store(self) -> Iterator[BlobStore]:
        url = f"memory://curator-test-{uuid.uuid4().hex}"
        store = FsspecBlobStore(url)
        yield store
        with contextlib.suppress(FileNotFoundError):  # memory:// is process-wide: clean up
            store.fs.rm(store.root, recursive=True)

    def test_url_is_the_fsspec_url(self, store: FsspecBlobStore) -> None:
        key = store.put(JPEG, "jpeg")
        assert store.url(key) == f"memory://{store.root}/{key}"


class TestFsspecFileBlobStore(BlobStoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> BlobStore:
        return FsspecBlobStore((tmp_path / "blobs").as_uri())

    def test_it_writes_plain_files_under_the_key_with_no_temporary_left(
        self, tmp_path: Path
    ) -> None:
        store = FsspecBlobStore((tmp_path / "blobs").as_uri())
        key = store.put(JPEG, "jpeg")
        assert _files(tmp_path / "blobs") == [tmp_path / "blobs" / key]
        assert (tmp_path / "blobs" / key).read_bytes() == JPEG
        # and a LocalBlobStore over the same folder reads it: the layout is the same
        assert LocalBlobStore(tmp_path / "blobs").get(key) == JPEG


def test_open_blob_store_picks_by_url(tmp_path: Path) -> None:
    assert isinstance(open_blob_store(tmp_path / "a"), LocalBlobStore)
    assert isinstance(open_blob_store(str(tmp_path / "b")), LocalBlobStore)
    local = open_blob_store((tmp_path / "c d").as_uri())
    assert isinstance(local, LocalBlobStore) and local.root == tmp_path / "c d"
    memory = open_blob_store(f"memory://curator-test-{uuid.uuid4().hex}")
    assert isinstance(memory, FsspecBlobStore)
    with pytest.raises(InvalidInputError, match="host"):
        open_blob_store("file://server/share")
    with pytest.raises(InvalidInputError, match="storage options"):
        open_blob_store(tmp_path, key="secret")


@given(st.binary(max_size=64), st.from_regex(r"[a-z0-9]{1,10}", fullmatch=True))
def test_every_key_blob_key_makes_passes_check_key(data: bytes, ext: str) -> None:
    key = blob_key(data, ext)
    assert check_key(key) == key
    assert not os.path.isabs(key) and ".." not in key.split("/")


@given(st.text(max_size=100))
def test_check_key_only_accepts_content_addresses(key: str) -> None:
    try:
        check_key(key)
    except InvalidInputError:
        return
    digest = key.split("/")[2].split(".")[0]
    assert key.startswith(f"{digest[:2]}/{digest[2:4]}/") and len(digest) == 64
