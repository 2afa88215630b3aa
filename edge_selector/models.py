"""Edge model updates: :class:`ModelUpdater` polls the server for the promoted model.

One check (:meth:`ModelUpdater.check_once`):

1. ``GET {server}/v1/models/latest`` with ``If-None-Match: "<sha256 of the running model>"``;
   ``304`` or ``404`` (no model promoted yet) means nothing to do.
2. A :class:`curator.wire.ModelInfo` naming other bytes: the file at ``download_path`` is
   streamed into a temporary file in ``model_dir``, its size and sha256 checked against the
   info, then loaded with the same loader as ``--model`` (so the contract and the output
   mapping are checked) and its ``curator.model_version`` compared with the info's.
3. Only then is it renamed to ``model_dir/<version>.onnx`` (atomically, fsynced) and recorded
   in ``model_dir/current.json``; the new :class:`~curator.inference.OnnxModel` is handed to the
   capture loop, which swaps it in between two batches (:meth:`ModelUpdater.take`,
   :meth:`edge_selector.selector.Selector.swap_model`).

Any failure leaves the running model in place, counts ``model.update_errors`` and logs one line
saying why; the sha256 that failed is not tried again until the server offers another one or
its backoff (``retry_failed_s``, doubling per failure, at most a day) has passed. A check that
gets no usable answer (offline, 5xx) counts ``model.check_errors``. ``model.updates`` counts
models handed to the capture loop.

At start-up, :func:`edge_selector.model_store.installed_model` prefers the model recorded in
``current.json`` over ``--model`` while ``--model`` is still the file it was installed over, so
a restart keeps an updated model (:mod:`edge_selector.model_store`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

import httpx
from pydantic import ValidationError

from curator.errors import CuratorError, InvalidInputError
from curator.inference import OnnxModel
from curator.wire import ModelInfo
from edge_selector.model_store import TMP_PREFIX, ModelLoader, install
from edge_selector.sync_http import describe_transport_error, error_message

__all__ = ["ModelUpdater", "UpdateOutcome"]

log = logging.getLogger(__name__)

_MAX_RETRY_S = 86_400.0


class _UpdateFailed(CuratorError):
    """An offered model that could not be installed; the message is the one-line reason."""


@dataclass(frozen=True)
class UpdateOutcome:
    """What one check found.

    Attributes:
        status: ``unchanged`` (304, 404 or the running model), ``updated`` (``model`` is
            ready to swap in), ``failed`` (an offered model was refused: ``reason``),
            ``skipped`` (an offered model that failed before, not retried yet), ``unreachable``
            (no usable answer: ``reason``).
        model: the new model when ``updated``.
        info: what the server offered, when it answered one.
        reason: why, for ``failed``, ``skipped`` and ``unreachable``.
    """

    status: Literal["unchanged", "updated", "failed", "skipped", "unreachable"]
    model: OnnxModel | None = None
    info: ModelInfo | None = None
    reason: str | None = None


class ModelUpdater:
    """Polls for, verifies and installs new models; hands them to the capture loop.

    Args:
        current: the running model.
        server: the server's base URL.
        token: the device's bearer token (never logged).
        model_dir: where downloaded models and ``current.json`` are kept (created).
        load: opens a model file (see :data:`ModelLoader`).
        given_sha256: sha256 of the ``--model`` file, recorded so a restart knows whether
            ``--model`` changed (default: ``current``'s).
        timeout_s: per-request timeout.
        retry_failed_s: how long a refused sha256 is left alone before one more try; doubles
            per failure of the same sha256.
        clock: monotonic seconds.
        client: the ``httpx.Client`` to use (e.g. on an ``httpx.MockTransport``); default: one
            made here and closed by :meth:`close`.

    :meth:`check_once` and :meth:`run` belong to one thread; :meth:`take` and
    :attr:`counts` may be used from any other.

    Raises:
        InvalidInputError: ``server`` is not an http(s) URL.
        OSError: ``model_dir`` cannot be created.
    """

    def __init__(
        self,
        current: OnnxModel,
        *,
        server: str,
        token: str,
        model_dir: Path,
        load: ModelLoader,
        given_sha256: str | None = None,
        timeout_s: float = 60.0,
        retry_failed_s: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
        client: httpx.Client | None = None,
    ) -> None:
        if not re.fullmatch(r"https?://[^/\s]+(/\S*)?", server or ""):
            raise InvalidInputError(f"server must be an http(s):// URL, got {server!r}")
        self.server = server.rstrip("/")
        self.model_dir = Path(model_dir)
        self.model_dir.mkdir(parents=True, exist_ok=True)
        for stale in self.model_dir.glob(f"{TMP_PREFIX}*"):  # a download a crash cut short
            stale.unlink(missing_ok=True)
        self._load, self._clock = load, clock
        self._auth = {"Authorization": f"Bearer {token}"}
        self._timeout, self._retry_s = timeout_s, retry_failed_s
        self.given_sha256 = given_sha256 or current.sha256
        self.current_sha256 = current.sha256
        self.current_version = current.model_version
        self.counts: Counter[str] = Counter()
        self.last_error: str | None = None
        self._failed: dict[str, tuple[int, float]] = {}  # sha256 -> (failures, retry at)
        self._pending: OnnxModel | None = None
        self._lock = threading.Lock()
        self._own_client = client is None
        self._client = client if client is not None else httpx.Client(timeout=timeout_s)

    def check_once(self) -> UpdateOutcome:
        """Ask the server once; download, verify and install a new model if there is one."""
        try:
            info = self._latest()
        except _UpdateFailed as exc:
            self.counts["model.check_errors"] += 1
            self.last_error = str(exc)
            log.info("model check failed: %s", exc)
            return UpdateOutcome("unreachable", reason=str(exc))
        if info is None or info.sha256 == self.current_sha256:
            return UpdateOutcome("unchanged", info=info)
        failures, retry_at = self._failed.get(info.sha256, (0, 0.0))
        if failures and self._clock() < retry_at:
            return UpdateOutcome("skipped", info=info, reason="failed before; not retried yet")
        try:
            model = self._install(info)
        except _UpdateFailed as exc:
            return self._refused(info, str(exc), failures)
        self._failed.pop(info.sha256, None)
        self.current_sha256, self.current_version = model.sha256, model.model_version
        with self._lock:
            self._pending = model
        log.info(
            "model update ready",
            extra={"model_version": model.model_version, "sha256": model.sha256},
        )
        return UpdateOutcome("updated", model=model, info=info)

    def take(self) -> OnnxModel | None:
        """The model installed since the last call, for the capture loop to swap in; or None."""
        with self._lock:
            model, self._pending = self._pending, None
        if model is not None:
            self.counts["model.updates"] += 1
        return model

    def run(self, stop: threading.Event, interval_s: float) -> None:
        """Check now and then every ``interval_s`` seconds until ``stop`` is set."""
        while not stop.is_set():
            try:
                self.check_once()
            except Exception as exc:  # never let the polling thread die: say it and go on
                self.counts["model.update_errors"] += 1
                log.warning("model check crashed: %s", describe_transport_error(exc))
            stop.wait(interval_s)

    def close(self) -> None:
        """Close the client if it was made here."""
        if self._own_client:
            self._client.close()

    # -- internals -------------------------------------------------------------------------

    def _refused(self, info: ModelInfo, reason: str, failures: int) -> UpdateOutcome:
        failures += 1
        wait = min(_MAX_RETRY_S, self._retry_s * 2.0 ** (failures - 1))
        self._failed[info.sha256] = (failures, self._clock() + wait)
        self.counts["model.update_errors"] += 1
        self.last_error = reason
        log.warning(
            "model update refused, keeping %s: %s", self._running_name(), reason,
            extra={"model_version": info.model_version, "sha256": info.sha256,
                   "retry_in_s": wait},
        )  # fmt: skip
        return UpdateOutcome("failed", info=info, reason=reason)

    def _running_name(self) -> str:
        return f"the running model (sha256 {self.current_sha256[:12]})"

    def _latest(self) -> ModelInfo | None:
        url = f"{self.server}/v1/models/latest"
        headers = {**self._auth, "If-None-Match": f'"{self.current_sha256}"'}
        try:
            response = self._client.get(url, headers=headers, timeout=self._timeout)
        except httpx.TransportError as exc:
            raise _UpdateFailed(f"GET {url}: {describe_transport_error(exc)}") from exc
        if response.status_code in (304, 404):
            return None
        if response.status_code != 200:
            raise _UpdateFailed(
                f"GET {url}: HTTP {response.status_code}: {error_message(response)}"
            )
        try:
            return ModelInfo.model_validate_json(response.content)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "body"
            raise _UpdateFailed(f"GET {url}: not a ModelInfo ({where}: {first['msg']})") from exc

    def _install(self, info: ModelInfo) -> OnnxModel:
        path = info.download_path
        if not path.startswith("/") or path.startswith("//"):
            raise _UpdateFailed(f"download_path {path!r} is not a path on the server")
        fd, tmp_name = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=".onnx", dir=self.model_dir)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                self._download(f"{self.server}{path}", info, out)
            try:
                model = self._load(tmp)
            except (CuratorError, OSError, ValueError) as exc:
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
                raise _UpdateFailed(
                    f"version {info.model_version!r} does not load: {reason}"
                ) from exc
            if model.model_version != info.model_version:
                raise _UpdateFailed(
                    f"the file says model_version {model.model_version!r}, the server "
                    f"{info.model_version!r}"
                )
            if model.model_version == self.current_version:
                raise _UpdateFailed(
                    f"version {info.model_version!r} is the running model's name with other "
                    "bytes; embeddings of the two would mix"
                )
            if model.sha256 != info.sha256:  # the loader read other bytes than were checked
                raise _UpdateFailed(f"loaded bytes have sha256 {model.sha256}, not {info.sha256}")
            install(self.model_dir, tmp, info, self.given_sha256)
            return model
        except OSError as exc:
            raise _UpdateFailed(f"cannot store version {info.model_version!r}: {exc}") from exc
        finally:
            tmp.unlink(missing_ok=True)

    def _download(self, url: str, info: ModelInfo, out: IO[bytes]) -> None:
        digest, size = hashlib.sha256(), 0
        try:
            with self._client.stream("GET", url, headers=self._auth, timeout=self._timeout) as r:
                if r.status_code != 200:
                    r.read()
                    raise _UpdateFailed(f"GET {url}: HTTP {r.status_code}: {error_message(r)}")
                for chunk in r.iter_bytes(1 << 16):
                    size += len(chunk)
                    if size > info.size_bytes:
                        raise _UpdateFailed(
                            f"download of {info.model_version!r} is larger than the "
                            f"{info.size_bytes} bytes announced"
                        )
                    digest.update(chunk)
                    out.write(chunk)
        except httpx.HTTPError as exc:
            raise _UpdateFailed(f"GET {url}: {describe_transport_error(exc)}") from exc
        out.flush()
        os.fsync(out.fileno())
        if size != info.size_bytes:
            raise _UpdateFailed(
                f"download of {info.model_version!r} has {size} bytes, {info.size_bytes} announced"
            )
        if digest.hexdigest() != info.sha256:
            raise _UpdateFailed(
                f"sha256 mismatch for {info.model_version!r}: got {digest.hexdigest()}, "
                f"announced {info.sha256}"
            )
