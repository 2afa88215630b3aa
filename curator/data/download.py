"""Download a file, check its sha256, and only then give it its name.

The bytes go to a hidden temporary file next to the destination; the file is renamed into place
(atomic on POSIX) only when the checksum matches, so a reader never sees a partial or wrong file,
and a failed download leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from curator.errors import DatasetError

__all__ = ["download_verified"]

_CHUNK = 1 << 20


def download_verified(
    url: str, dest: str | os.PathLike[str], sha256: str, *, timeout: float = 60.0
) -> Path:
    """Fetch ``url`` into ``dest`` if and only if its sha256 is ``sha256``.

    Args:
        url: where to fetch from (any scheme urllib opens: http, https, file).
        dest: the final path; its folder is created if needed.
        sha256: the expected hex digest of the bytes.
        timeout: seconds to wait on the connection and on each read.

    Returns:
        ``dest`` as a Path.

    Raises:
        DatasetError: the download failed or the checksum differs; nothing is left at
            ``dest`` or beside it in either case.
    """
    target = Path(dest)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatasetError(f"cannot create the folder {target.parent}: {exc}") from exc
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    tmp = Path(tmp_name)
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            while chunk := resp.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != sha256.lower():
            raise DatasetError(
                f"sha256 mismatch for {url}: expected {sha256.lower()}, got "
                f"{digest.hexdigest()}; the download was discarded"
            )
        os.replace(tmp, target)
    except DatasetError:
        tmp.unlink(missing_ok=True)
        raise
    except urllib.error.HTTPError as exc:
        tmp.unlink(missing_ok=True)
        exc.close()
        raise DatasetError(f"cannot download {url}: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError, ValueError) as exc:
        tmp.unlink(missing_ok=True)
        reason = getattr(exc, "reason", None) or exc
        raise DatasetError(f"cannot download {url}: {reason}") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target
