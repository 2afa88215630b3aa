"""The folder of installed models: ``model_dir/<version>.onnx`` and ``current.json``.

:func:`install` moves a verified download into place (rename, fsync of the folder) and records
it in ``current.json`` (written to a temporary file, fsynced, renamed): after a power cut either
the old record or the new one is there, and the file it names is complete. At start-up
:func:`installed_model` prefers the recorded model over ``--model`` while ``--model`` is still
the file it was installed over (its sha256 is recorded as ``given_sha256``), so a restart keeps
an updated model, and an operator who points ``--model`` at another file gets that one.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from curator.errors import CuratorError
from curator.inference import OnnxModel
from curator.wire import ModelInfo

__all__ = ["CURRENT_FILE", "TMP_PREFIX", "ModelLoader", "install", "installed_model"]

log = logging.getLogger(__name__)

CURRENT_FILE = "current.json"
"""The record, in ``model_dir``, of the model the updater installed last."""

TMP_PREFIX = ".download-"
"""Files in ``model_dir`` starting so are unfinished downloads (removed at start-up)."""

_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")

ModelLoader = Callable[[Path], OnnxModel]
"""Opens a model file as ``--model`` is opened (output mapping, threads); raises
:class:`~curator.errors.ModelContractError` when it breaks the contract."""


def install(model_dir: Path, downloaded: Path, info: ModelInfo, given_sha256: str) -> Path:
    """Move the verified ``downloaded`` file to ``model_dir/<version>.onnx`` and record it.

    Keeps the previous installed model as well; older ones are deleted.

    Raises:
        OSError: the folder cannot be written.
    """
    final = model_dir / _file_name(info)
    previous = _recorded_file(model_dir)
    os.replace(downloaded, final)
    _fsync_dir(model_dir)
    _write_record(model_dir, info, final.name, given_sha256)
    for old in model_dir.glob("*.onnx"):
        if old.name not in (final.name, previous):
            old.unlink(missing_ok=True)
    return final


def installed_model(given: OnnxModel, model_dir: Path, load: ModelLoader) -> OnnxModel:
    """The model to start with: the one in ``model_dir/current.json`` if it still applies.

    It applies while ``given`` (the ``--model``) is the file it was installed over, and its
    file loads and has the recorded sha256. Anything else starts ``given``, with one log line
    when a record was there but not used.
    """
    record_path = Path(model_dir) / CURRENT_FILE
    if not record_path.is_file():
        return given
    try:
        record = json.loads(record_path.read_text())
        sha, name, over = record["sha256"], record["file"], record["given_sha256"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("unreadable %s, starting --model: %s", record_path, exc)
        return given
    if sha == given.sha256:
        return given
    if over != given.sha256:
        log.info("--model changed since the last update; starting it, not %s", name)
        return given
    try:
        model = load(Path(model_dir) / Path(str(name)).name)
    except (CuratorError, OSError, ValueError) as exc:
        log.warning("installed model %s unusable, starting --model: %s", name, exc)
        return given
    if model.sha256 != sha:
        log.warning("installed model %s does not have the recorded sha256; starting --model", name)
        return given
    log.info("starting the updated model", extra={"model_version": model.model_version})
    return model


def _file_name(info: ModelInfo) -> str:
    name = info.model_version if _SAFE_NAME.fullmatch(info.model_version) else info.sha256
    return f"{name}.onnx"


def _write_record(model_dir: Path, info: ModelInfo, file: str, given_sha256: str) -> None:
    record = {
        "model_version": info.model_version,
        "sha256": info.sha256,
        "size_bytes": info.size_bytes,
        "file": file,
        "given_sha256": given_sha256,
        "installed_at": datetime.now(UTC).isoformat(),
    }
    tmp = model_dir / f"{TMP_PREFIX}{CURRENT_FILE}"
    with tmp.open("w") as f:
        json.dump(record, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, model_dir / CURRENT_FILE)
    _fsync_dir(model_dir)


def _recorded_file(model_dir: Path) -> str | None:
    """The file name ``current.json`` names now, if any."""
    try:
        return Path(str(json.loads((model_dir / CURRENT_FILE).read_text())["file"])).name
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
