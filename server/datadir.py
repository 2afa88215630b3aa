"""One server process per data folder: an exclusive advisory lock on ``<data_dir>/server.lock``.

Two servers on one data folder would each keep their own in-memory dedup index (and so accept
near duplicates of each other's frames) and write the same dedup snapshot. :class:`DataDirLock`
takes ``flock(LOCK_EX | LOCK_NB)`` on the lock file and writes the holder's pid into it, for
people; a second taker fails at once with :class:`~server.errors.DataDirInUse` naming the folder
and that pid. The operating system drops the lock when its process dies, ``kill -9`` included,
so a stale file never blocks a restart (its old pid is overwritten by the next holder).

The lock is advisory: only servers take it. ``curator-server token ...`` does not, so tokens can
be managed while a server runs (SQLite arbitrates their writes). ``flock`` is only as good as the
file system's support: local disks are fine; on NFS prefer one host per data folder anyway.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from server.errors import DataDirInUse

__all__ = ["LOCK_FILE_NAME", "DataDirLock"]

LOCK_FILE_NAME = "server.lock"


class DataDirLock:
    """The held lock of one data folder; :meth:`acquire` takes it, :meth:`release` drops it.

    Use as a context manager, or call :meth:`release` (idempotent). The lock belongs to the open
    file, not the thread: a second :meth:`acquire` of the same folder fails even in the same
    process.
    """

    def __init__(self, data_dir: Path, fd: int) -> None:
        self.data_dir = data_dir
        self.path = data_dir / LOCK_FILE_NAME
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, data_dir: str | os.PathLike[str]) -> DataDirLock:
        """Create ``data_dir`` if needed and take its lock without waiting.

        Raises:
            DataDirInUse: another process (or another open in this one) holds the lock; the
                message names the folder and the holder's pid.
            OSError: the folder or the lock file cannot be created.
        """
        root = Path(data_dir)
        root.mkdir(parents=True, exist_ok=True)
        path = root / LOCK_FILE_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            raise DataDirInUse(
                f"data dir {str(root)!r} is in use by another curator server "
                f"({'pid ' + holder if holder else 'pid unknown'}; lock file {str(path)!r}): "
                "stop it or choose another --data-dir"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:  # the pid is only a note for people; the lock is what counts
            pass
        return cls(root, fd)

    @property
    def held(self) -> bool:
        """Whether this object still holds the lock."""
        return self._fd is not None

    def release(self) -> None:
        """Clear the pid and drop the lock (a no-op when released already)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)  # closing the last descriptor of the open file drops the flock

    def __enter__(self) -> DataDirLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"DataDirLock({str(self.data_dir)!r}, held={self.held})"


def _read_pid(fd: int) -> str:
    """The pid the holder wrote, or "" when the file holds none (yet)."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return ""
    return text if text.isdigit() else ""
