"""Where the server keeps image bytes: content-addressed blobs in a folder or any fsspec store.

A blob's key is derived from its bytes, ``ab/cd/<sha256>.<ext>`` (the first two byte pairs of
the hash as folders), so keys are relative, never absolute paths, the same image always lands
on the same key and :meth:`BlobStore.put` is idempotent. The catalog stores keys, never paths
or URLs, so a store can move (folder to S3) without touching a record.

- :class:`LocalBlobStore`: a folder; writes go to a temporary file in the target folder, then
  ``os.replace``: a reader sees the whole blob or none. :meth:`BlobStore.put_many` makes a whole
  batch durable with two barriers (every temporary file's data, then every rename), so an upload
  batch costs two flushes instead of two fsyncs per image (docs/server-storage.md).
- :class:`FsspecBlobStore`: any fsspec URL (``s3://bucket/prefix``, ``memory://x``, ...). On
  object stores a PUT is atomic; on a local filesystem it writes a temporary file and renames.
- :func:`open_blob_store`: a folder path or ``file://`` URL gives a :class:`LocalBlobStore`,
  any other URL an :class:`FsspecBlobStore`.
"""

from __future__ import annotations

import abc
import contextlib
import ctypes
import ctypes.util
import hashlib
import os
import re
import secrets
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import unquote, urlparse

import fsspec
from fsspec.implementations.local import LocalFileSystem

from curator.errors import InvalidInputError
from server.errors import NotFound

__all__ = [
    "BlobStore",
    "FsspecBlobStore",
    "LocalBlobStore",
    "blob_key",
    "check_key",
    "open_blob_store",
]

_EXT = re.compile(r"[a-z0-9]{1,10}")
_KEY = re.compile(r"([0-9a-f]{2})/([0-9a-f]{2})/([0-9a-f]{64})\.[a-z0-9]{1,10}")
_TEMP_PREFIX = ".tmp-"
_KNOWN_DIRS_MAX = 70_000  # every ab/cd/ folder (65,536) and a few more


def blob_key(data: bytes, ext: str) -> str:
    """The key of ``data``: ``ab/cd/<sha256 hex>.<ext>``.

    Raises:
        InvalidInputError: ``ext`` is not 1-10 lowercase letters or digits (no dot).
    """
    if not isinstance(ext, str) or not _EXT.fullmatch(ext):
        raise InvalidInputError(
            f"blob extension must be 1-10 lowercase letters or digits without a dot, got {ext!r}"
        )
    digest = hashlib.sha256(data).hexdigest()
    return f"{digest[:2]}/{digest[2:4]}/{digest}.{ext}"


def check_key(key: str) -> str:
    """Return ``key`` if it is a well-formed blob key, else raise.

    Raises:
        InvalidInputError: ``key`` is absolute, climbs out with ``..``, or is not of the form
            ``ab/cd/<sha256 hex>.<ext>`` with ``ab``/``cd`` the hash's first two byte pairs.
    """
    if not isinstance(key, str):
        raise InvalidInputError(f"blob key must be a string, got {type(key).__name__}")
    parts = key.replace("\\", "/").split("/")
    if key.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", key) or ".." in parts:
        raise InvalidInputError(
            f"blob key {key!r} is refused (path traversal): keys are relative, without '..'"
        )
    match = _KEY.fullmatch(key)
    if not match or not match.group(3).startswith(match.group(1) + match.group(2)):
        raise InvalidInputError(f"blob key {key!r} is not of the form 'ab/cd/<sha256>.<ext>'")
    return key


class BlobStore(abc.ABC):
    """Content-addressed bytes under keys from :func:`blob_key`.

    Every method checks its key with :func:`check_key` first.
    """

    def put(self, data: bytes | bytearray | memoryview, ext: str) -> str:
        """Store ``data`` and return its key; a key that exists already is not rewritten.

        Args:
            data: the bytes (e.g. an encoded image); not inspected.
            ext: the extension for the key, e.g. ``"jpeg"``.

        Raises:
            InvalidInputError: ``ext`` is malformed or ``data`` is not bytes.
        """
        return self.put_many([(data, ext)])[0]

    def put_many(self, items: Iterable[tuple[bytes | bytearray | memoryview, str]]) -> list[str]:
        """Store several blobs, durable together when this returns; their keys in order.

        Keys that exist already (or repeat within ``items``) are not written again. A failure
        part-way may leave some of the new blobs stored (each one whole), never a partial one.

        Args:
            items: ``(data, ext)`` pairs, as for :meth:`put`.

        Raises:
            InvalidInputError: an ``ext`` is malformed or a ``data`` is not bytes; nothing is
                written then.
            OSError: a write failed.
        """
        keys: list[str] = []
        new: dict[str, bytes] = {}
        for data, ext in items:
            if not isinstance(data, bytes | bytearray | memoryview):
                raise InvalidInputError(f"blob data must be bytes, got {type(data).__name__}")
            raw = bytes(data)
            key = blob_key(raw, ext)
            keys.append(key)
            if key not in new and not self._exists(key):
                new[key] = raw
        if new:
            self._write_many(new)
        return keys

    def get(self, key: str) -> bytes:
        """The bytes stored under ``key``.

        Raises:
            InvalidInputError: ``key`` is malformed (see :func:`check_key`).
            NotFound: nothing is stored under ``key``.
        """
        try:
            return self._read(check_key(key))
        except FileNotFoundError as exc:
            raise NotFound(f"no blob under key {key!r}") from exc

    def exists(self, key: str) -> bool:
        """Whether something is stored under ``key``."""
        return self._exists(check_key(key))

    def delete(self, key: str) -> bool:
        """Remove the blob; True if it existed."""
        return self._delete(check_key(key))

    def url(self, key: str) -> str:
        """Where the blob lives, for people and tools (``file://...``, ``s3://...``); never
        store it in a record: it changes when the store moves."""
        return self._url(check_key(key))

    def _write_many(self, blobs: dict[str, bytes]) -> None:
        """Write ``key -> data``, durable when this returns; default: one :meth:`_write` each."""
        for key, data in blobs.items():
            self._write(key, data)

    @abc.abstractmethod
    def _write(self, key: str, data: bytes) -> None: ...

    @abc.abstractmethod
    def _read(self, key: str) -> bytes: ...

    @abc.abstractmethod
    def _exists(self, key: str) -> bool: ...

    @abc.abstractmethod
    def _delete(self, key: str) -> bool: ...

    @abc.abstractmethod
    def _url(self, key: str) -> str: ...


class LocalBlobStore(BlobStore):
    """Blobs in a folder, written atomically and durably.

    Paths are handled as strings (``os.path``), not ``pathlib`` objects: a batch writes dozens
    of files and the store runs on the server's request threads.

    Args:
        root: the folder; created (with its parents) if missing.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self._root = str(self.root)
        self._known_dirs: set[str] = set()

    def _path(self, key: str) -> str:
        return os.path.join(self._root, *key.split("/"))

    def _write(self, key: str, data: bytes) -> None:
        self._write_many({key: data})

    def _write_many(self, blobs: dict[str, bytes]) -> None:
        """Temporary files, barrier, renames, barrier: after a crash a key holds all its bytes.

        The first barrier makes the data durable before any name points at it (on ext4 a
        renamed, never-flushed new file can come back empty); the second makes the renames
        and new folders durable before the caller records the keys anywhere.
        """
        staged: list[tuple[str, str]] = []
        try:
            for key, data in blobs.items():
                path = self._path(key)
                f = self._temporary(os.path.dirname(path))
                staged.append((f.name, path))
                with f:
                    f.write(data)
            _flush([tmp for tmp, _ in staged], self.root)
            for tmp, path in staged:
                os.replace(tmp, path)
        except BaseException:
            for tmp, _ in staged:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
            raise
        parents = {os.path.dirname(path) for _, path in staged}
        folders = parents | {os.path.dirname(p) for p in parents} | {self._root}
        _flush(sorted(folders), self.root)

    def _temporary(self, folder: str) -> BinaryIO:
        """A new temporary file in ``folder`` (created if missing), open for writing; its
        ``name`` is its path."""
        self._make_dirs(folder)
        tmp = os.path.join(folder, f"{_TEMP_PREFIX}{secrets.token_hex(8)}.part")
        try:
            return open(tmp, "xb", opener=_private)
        except FileNotFoundError:  # the folder was removed behind our back since it was cached
            self._known_dirs.clear()
            self._make_dirs(folder)
            return open(tmp, "xb", opener=_private)

    def _make_dirs(self, folder: str) -> None:
        """Create ``folder`` under the root level by level (made durable by the next flush)."""
        if folder in self._known_dirs:
            return
        missing = []
        at = folder
        while at != self._root and not os.path.isdir(at):
            missing.append(at)
            at = os.path.dirname(at)
        for path in reversed(missing):
            with contextlib.suppress(FileExistsError):
                os.mkdir(path)
        if len(self._known_dirs) < _KNOWN_DIRS_MAX:
            self._known_dirs.add(folder)

    def _read(self, key: str) -> bytes:
        with open(self._path(key), "rb") as f:
            return f.read()

    def _exists(self, key: str) -> bool:
        return os.path.isfile(self._path(key))

    def _delete(self, key: str) -> bool:
        path = self._path(key)
        try:
            os.unlink(path)
        except FileNotFoundError:
            return False
        _fsync_path(os.path.dirname(path))
        return True

    def _url(self, key: str) -> str:
        return Path(self._path(key)).as_uri()

    def __repr__(self) -> str:
        return f"LocalBlobStore({self._root!r})"


class FsspecBlobStore(BlobStore):
    """Blobs under any fsspec URL: ``s3://bucket/prefix``, ``gcs://...``, ``memory://name``.

    Args:
        url: the store's root URL.
        **storage_options: passed to fsspec (credentials, ``endpoint_url`` for an
            S3-compatible store, ...); never logged.
    """

    def __init__(self, url: str, **storage_options: Any) -> None:
        fs, root = fsspec.core.url_to_fs(url, **storage_options)
        self.fs: fsspec.AbstractFileSystem = fs
        self.root: str = root.rstrip("/")
        self._local = isinstance(fs, LocalFileSystem)
        if self._local:
            fs.makedirs(self.root, exist_ok=True)

    def _path(self, key: str) -> str:
        return f"{self.root}/{key}"

    def _write(self, key: str, data: bytes) -> None:
        path = self._path(key)
        if not self._local:
            self.fs.pipe_file(path, data)  # one PUT: readers see all of it or nothing
            return
        parent = path.rsplit("/", 1)[0]
        self.fs.makedirs(parent, exist_ok=True)
        tmp = f"{parent}/{_TEMP_PREFIX}{secrets.token_hex(8)}.part"
        try:
            self.fs.pipe_file(tmp, data)
            self.fs.mv(tmp, path)
        except BaseException:
            if self.fs.exists(tmp):
                self.fs.rm_file(tmp)
            raise

    def _read(self, key: str) -> bytes:
        data: bytes = self.fs.cat_file(self._path(key))
        return data

    def _exists(self, key: str) -> bool:
        return bool(self.fs.exists(self._path(key)))

    def _delete(self, key: str) -> bool:
        try:
            self.fs.rm_file(self._path(key))
        except FileNotFoundError:
            return False
        return True

    def _url(self, key: str) -> str:
        url: str = self.fs.unstrip_protocol(self._path(key))
        return url

    def __repr__(self) -> str:
        return f"FsspecBlobStore({self.fs.unstrip_protocol(self.root)!r})"


def open_blob_store(url_or_path: str | os.PathLike[str], **storage_options: Any) -> BlobStore:
    """The blob store for a folder path, a ``file://`` URL or any other fsspec URL.

    Raises:
        InvalidInputError: a ``file://`` URL with a host, or storage options for a folder.
    """
    text = os.fspath(url_or_path)
    if "://" not in text:
        return _local(Path(text), storage_options)
    parsed = urlparse(text)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise InvalidInputError(f"file URL {text!r} names a host; expected file:///path")
        return _local(Path(unquote(parsed.path)), storage_options)
    return FsspecBlobStore(text, **storage_options)


def _local(root: Path, storage_options: dict[str, Any]) -> LocalBlobStore:
    if storage_options:
        raise InvalidInputError(
            f"a local folder takes no storage options, got {sorted(storage_options)}"
        )
    return LocalBlobStore(root)


def _private(path: str, flags: int) -> int:
    """``open``'s opener for temporary files: readable by the server's user only."""
    return os.open(path, flags, 0o600)


def _syncfs() -> Callable[[int], int] | None:
    """Linux's ``syncfs(fd)`` from the C library, or None where there is none."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        fn = libc.syncfs
    except (OSError, AttributeError):
        return None
    fn.argtypes, fn.restype = [ctypes.c_int], ctypes.c_int
    return fn


_SYNCFS = _syncfs()


def _flush(paths: Sequence[str], root: Path) -> None:
    """Make ``paths`` (files or folders) durable: one ``syncfs`` of the filesystem holding
    ``root`` where Linux has it (a single flush, however many paths), else an fsync each."""
    if not paths:
        return
    if _SYNCFS is not None:
        fd = os.open(root, os.O_RDONLY)
        try:
            if _SYNCFS(fd) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"syncfs({root}): {os.strerror(err)}")
        finally:
            os.close(fd)
        return
    for path in paths:
        _fsync_path(path)


def _fsync_path(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
