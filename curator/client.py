"""A small typed client for the curator server's HTTP API, for scripts, notebooks and the demo.

One method per route (docs/server.md, docs/labeling.md, docs/registry.md, docs/jobs.md)::

    from curator.client import CuratorClient

    with CuratorClient("http://127.0.0.1:8000", token) as api:
        for task in api.lease_tasks(count=10):
            api.submit_label(task["frame_id"], "sandal", lease_id=task["lease_id"])
        job = api.wait_for_job(api.request_fine_tune()["job"]["job_id"])

Answers come back as the wire models where :mod:`curator.wire` defines them
(:class:`~curator.wire.ModelInfo`, :class:`~curator.wire.BatchResult`) and as the route's JSON
object (a ``dict``) otherwise. Every 4xx/5xx answer raises :class:`~curator.errors.ApiError`
with the status, the server's error code and its JSON body; a server that does not answer raises
httpx's ``TransportError``. Pass ``client=`` to reuse a configured ``httpx.Client`` or to point
the client at a test transport. Needs httpx (the ``edge`` or ``server`` extra).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from curator._optional import require
from curator.errors import ApiError, InvalidInputError
from curator.wire import MEDIA_TYPE, BatchResult, BatchUpload, ModelInfo, encode_batch

if TYPE_CHECKING:
    import httpx

__all__ = ["CuratorClient", "ExportFormat", "PromoteMode"]

ExportFormat = Literal["jsonl", "coco", "labelstudio"]
PromoteMode = Literal["auto", "yes", "no"]
_FINISHED = ("succeeded", "failed")


class CuratorClient:
    """The server API over one ``httpx.Client``.

    Args:
        base_url: the server, e.g. ``http://127.0.0.1:8000``.
        token: a bearer token (``curator-server token create``); None for the open routes only
            (``/healthz``, ``/readyz``).
        client: an ``httpx.Client`` to send requests with (its ``base_url`` is not used); the
            caller closes it. None: one is made here and closed by :meth:`close`.
        timeout: seconds per request for a client made here.

    Raises:
        MissingDependencyError: httpx is not installed.
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        client: httpx.Client | None = None,
        timeout: float = 30.0,
    ) -> None:
        httpx_module = require("httpx", extra="edge")
        self.base_url = base_url.rstrip("/")
        self._headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        self._own = client is None
        self._http: httpx.Client = (
            client if client is not None else httpx_module.Client(timeout=timeout)
        )

    def close(self) -> None:
        """Close the ``httpx.Client`` if it was made here."""
        if self._own:
            self._http.close()

    def __enter__(self) -> CuratorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport ---------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        ok: tuple[int, ...] = (200,),
        **kwargs: Any,
    ) -> httpx.Response:
        """Send one request; any status outside ``ok`` that is >= 400 raises :class:`ApiError`."""
        headers = {**self._headers, **kwargs.pop("headers", {})}
        url = f"{self.base_url}{path}"
        response = self._http.request(method, url, headers=headers, **kwargs)
        if response.status_code >= 400 and response.status_code not in ok:
            raise _api_error(response, method, path)
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._request(method, path, **kwargs).json()

    # -- operations --------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """``GET /healthz``: ``{"status": "ok"}`` while the process answers."""
        return dict(self._json("GET", "/healthz"))

    def ready(self) -> dict[str, Any]:
        """``GET /readyz``: ``{"status", "checks"}``; a store that is down answers 503 and so
        raises :class:`ApiError` (its ``detail`` names the failing check)."""
        return dict(self._json("GET", "/readyz"))

    def whoami(self) -> dict[str, Any]:
        """``GET /v1/whoami``: the token's role, id and device."""
        return dict(self._json("GET", "/v1/whoami"))

    # -- devices -----------------------------------------------------------------------------

    def devices(self) -> list[dict[str, Any]]:
        """``GET /v1/devices`` (admin): each device's newest heartbeat, counters included."""
        return list(self._json("GET", "/v1/devices")["devices"])

    def upload_batch(self, batch: BatchUpload | bytes) -> BatchResult:
        """``POST /v1/batches`` (device token of ``batch.device_id``): the per-frame answers.

        ``batch`` is a :class:`~curator.wire.BatchUpload`, or its bytes already encoded with
        :func:`~curator.wire.encode_batch` (when the caller also needs their size).
        """
        response = self._request(
            "POST",
            "/v1/batches",
            content=batch if isinstance(batch, bytes) else encode_batch(batch),
            headers={"Content-Type": MEDIA_TYPE},
        )
        return BatchResult.model_validate_json(response.content)

    # -- labeling ----------------------------------------------------------------------------

    def lease_tasks(self, count: int = 10, lease_s: float = 300.0) -> list[dict[str, Any]]:
        """``POST /v1/label-tasks/lease``: up to ``count`` frames to label, chosen by the
        server's pool strategy and leased to this token; empty when nothing is left."""
        body = {"count": count, "lease_s": lease_s}
        return list(self._json("POST", "/v1/label-tasks/lease", json=body)["tasks"])

    def renew_task(self, lease_id: str, lease_s: float = 300.0) -> dict[str, Any]:
        """``POST /v1/label-tasks/{lease_id}/renew``: the lease, expiring ``lease_s`` from now."""
        path = f"/v1/label-tasks/{lease_id}/renew"
        return dict(self._json("POST", path, json={"lease_s": lease_s}))

    def release_task(self, lease_id: str) -> dict[str, Any]:
        """``POST /v1/label-tasks/{lease_id}/release``: give a leased frame back."""
        return dict(self._json("POST", f"/v1/label-tasks/{lease_id}/release"))

    def submit_label(
        self, frame_id: str, class_name: str, *, lease_id: str | None = None
    ) -> dict[str, Any]:
        """``POST /v1/labels``: label (or correct the label of) an accepted frame."""
        body = {"frame_id": frame_id, "class_name": class_name, "lease_id": lease_id}
        return dict(self._json("POST", "/v1/labels", json=body, ok=(201,)))

    def label_stats(self) -> dict[str, Any]:
        """``GET /v1/labels/stats``: frame and label counts, per class and per labeler."""
        return dict(self._json("GET", "/v1/labels/stats"))

    def export_labels(self, format: ExportFormat = "jsonl") -> Any:
        """``GET /v1/labels/export``: a list of label objects for ``jsonl``; the COCO or Label
        Studio JSON document otherwise."""
        response = self._request("GET", "/v1/labels/export", params={"format": format})
        if format == "jsonl":
            return [json.loads(line) for line in response.text.splitlines() if line.strip()]
        return response.json()

    def frame_image(self, frame_id: str) -> bytes:
        """``GET /v1/frames/{frame_id}/image``: the stored image bytes (JPEG or PNG)."""
        return self._request("GET", f"/v1/frames/{frame_id}/image").content

    # -- models ------------------------------------------------------------------------------

    def latest_model(self) -> ModelInfo | None:
        """``GET /v1/models/latest``: the promoted model, or None when none is promoted yet."""
        response = self._request("GET", "/v1/models/latest", ok=(404,))
        if response.status_code == 404:
            return None
        return ModelInfo.model_validate_json(response.content)

    def download_model(self, model_version: str, *, sha256: str | None = None) -> bytes:
        """``GET /v1/models/{model_version}/file``: the ONNX bytes.

        Raises:
            ApiError: the server refused (404: no such version).
            InvalidInputError: ``sha256`` is given and the bytes do not have it.
        """
        data = self._request("GET", f"/v1/models/{model_version}/file").content
        if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
            raise InvalidInputError(
                f"model {model_version!r}: downloaded bytes do not have sha256 {sha256}"
            )
        return data

    def list_models(self) -> list[ModelInfo]:
        """``GET /v1/models`` (admin): every registered version, oldest first."""
        return [ModelInfo.model_validate(m) for m in self._json("GET", "/v1/models")]

    def register_model(
        self,
        onnx: bytes,
        *,
        promote: PromoteMode = "auto",
        metrics: dict[str, float] | None = None,
        parent_version: str | None = None,
        snapshot_key: str | None = None,
    ) -> ModelInfo:
        """``POST /v1/models`` (admin): register an ONNX file; ``promote`` is ``auto`` (the
        gate), ``yes`` or ``no``. The same bytes again return the stored version."""
        params: dict[str, str] = {"promote": promote}
        if metrics is not None:
            params["metrics"] = json.dumps(metrics)
        if parent_version is not None:
            params["parent_version"] = parent_version
        if snapshot_key is not None:
            params["snapshot_key"] = snapshot_key
        response = self._request(
            "POST",
            "/v1/models",
            content=onnx,
            params=params,
            headers={"Content-Type": "application/octet-stream"},
            ok=(201,),
        )
        return ModelInfo.model_validate_json(response.content)

    def promote_model(self, model_version: str) -> ModelInfo:
        """``POST /v1/models/{model_version}/promote`` (admin), without the gate."""
        path = f"/v1/models/{model_version}/promote"
        return ModelInfo.model_validate(self._json("POST", path))

    def demote_model(self, model_version: str) -> ModelInfo:
        """``POST /v1/models/{model_version}/demote`` (admin): devices fall back."""
        path = f"/v1/models/{model_version}/demote"
        return ModelInfo.model_validate(self._json("POST", path))

    # -- jobs --------------------------------------------------------------------------------

    def request_fine_tune(self) -> dict[str, Any]:
        """``POST /v1/jobs/fine-tune`` (admin): ``{"started", "reason", "job"}``; ``job`` is the
        current label snapshot's job, new or existing, or None when there is nothing to train."""
        return dict(self._json("POST", "/v1/jobs/fine-tune", ok=(202,)))

    def job(self, job_id: str) -> dict[str, Any]:
        """``GET /v1/jobs/{job_id}`` (admin): status, attempts and result."""
        return dict(self._json("GET", f"/v1/jobs/{job_id}"))

    def jobs(self) -> list[dict[str, Any]]:
        """``GET /v1/jobs`` (admin): every job, newest first."""
        return list(self._json("GET", "/v1/jobs"))

    def wait_for_job(
        self,
        job_id: str,
        *,
        timeout_s: float = 600.0,
        poll_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> dict[str, Any]:
        """Poll :meth:`job` until it has succeeded or failed; returns the finished job.

        Raises:
            TimeoutError: the job is not finished after ``timeout_s`` seconds.
            ApiError: the server refused (404: no such job).
        """
        deadline = clock() + timeout_s
        while True:
            job = self.job(job_id)
            if job["status"] in _FINISHED:
                return job
            if clock() >= deadline:
                raise TimeoutError(
                    f"job {job_id} still {job['status']} after {timeout_s} s (attempts "
                    f"{job.get('attempts')})"
                )
            sleep(poll_s)


def _api_error(response: httpx.Response, method: str, path: str) -> ApiError:
    """The :class:`ApiError` for an error answer, from the server's ``{"error": ...}`` body."""
    try:
        detail: object = response.json()
    except ValueError:
        detail = response.text[:2000]
    code, message = f"http_{response.status_code}", str(detail)[:500]
    if isinstance(detail, dict) and isinstance(detail.get("error"), dict):
        code = str(detail["error"].get("code", code))
        message = str(detail["error"].get("message", message))
    return ApiError(response.status_code, code, message, detail, method, path)
