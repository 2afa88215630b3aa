"""The demo's steps against a fleet's server, each through :mod:`curator.client`: the seed import,
a fine-tuning run on every fleet, and the promoted model measured on the test set.

The seed model is the fleet's first fine-tuning job, so that its weights are kept by the server
and every later job fine-tunes from them (a model registered from outside has only its ONNX
file, which cannot be trained further). To give that job the architecture and preprocessing the
demo wants (``tiny_cnn``, 28x28 gray, the Fashion-MNIST classes), an untrained model with them is
registered and promoted first through the admin model route, like ``curator model init``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from curator.data.fashion_mnist import CLASS_NAMES
from curator.demo.cameras import CameraPart
from curator.demo.fleet import FleetServer
from curator.demo.streams import CameraRound, write_frames
from curator.demo.uploads import upload_frames
from curator.errors import CuratorError
from curator.inference import OnnxModel

__all__ = [
    "FLEETS",
    "SEED_DEVICE",
    "accuracy",
    "camera_parts",
    "clear_output",
    "fine_tune_all",
    "import_seed_set",
    "initial_model",
    "promoted_model",
]

FLEETS = ("curated", "random")
SEED_DEVICE = "seed-set"
"""The device id the seed images are uploaded under."""
UInt8 = npt.NDArray[np.uint8]


def accuracy(model: OnnxModel, images: UInt8, labels: UInt8) -> float:
    """Top-1 accuracy of ``model`` on ``(N, 28, 28)`` images."""
    probs = model.predict(images[..., None], batch_size=1000).probs
    return float((probs.argmax(axis=1) == labels).mean())


def clear_output(out: Path) -> None:
    """Remove a previous demo's files from ``out`` (only the ones the demo writes)."""
    for name in (*FLEETS, "streams", "models", "plots"):
        shutil.rmtree(out / name, ignore_errors=True)
    for name in ("report.json", "report.html"):
        (out / name).unlink(missing_ok=True)
    (out / "models").mkdir(parents=True)


def initial_model(seed: int) -> bytes:
    """An untrained, seeded ``tiny_cnn`` for 28x28 gray Fashion-MNIST frames, as ONNX bytes."""
    from curator.inference.contract import ModelMetadata
    from curator.training import build_embedder, export_onnx

    metadata = ModelMetadata(
        model_version="init",
        class_names=CLASS_NAMES,
        embedding_dim=64,
        input_size=(28, 28),
        channels="gray",
    )
    module = build_embedder(
        "tiny_cnn", embedding_dim=64, num_classes=len(CLASS_NAMES), input_size=28,
        channels="gray", seed=seed,
    )  # fmt: skip
    return export_onnx(module, metadata)


def import_seed_set(fleet: FleetServer, init: bytes, images: UInt8, labels: UInt8) -> int:
    """Register and promote ``init``, upload the seed images scored by it, label the accepted
    ones with their classes; returns how many were labeled."""
    with fleet.client() as admin:
        admin.register_model(init, promote="yes")
    model = OnnxModel(init, intra_op_threads=1)
    with fleet.client(device_id=SEED_DEVICE) as device, fleet.client("labeler") as labeler:
        sent = upload_frames(
            device, SEED_DEVICE, images, model, first_seq=1, keep_reason="seed_set"
        )
        for frame_id, i in sent.accepted.items():
            labeler.submit_label(frame_id, CLASS_NAMES[int(labels[i])])
    return len(sent.accepted)


def fine_tune_all(fleets: dict[str, FleetServer], timeout_s: float) -> dict[str, dict[str, Any]]:
    """Ask every server for a fine-tuning run, then wait for the jobs (the fleets' workers run
    side by side). Per fleet: the job's id, status, model version, promotion and metrics."""
    asked: dict[str, dict[str, Any]] = {}
    for name, fleet in fleets.items():
        with fleet.client() as api:
            asked[name] = api.request_fine_tune()
    jobs: dict[str, dict[str, Any]] = {}
    for name, fleet in fleets.items():
        job = asked[name]["job"]
        if job is None:
            jobs[name] = {"status": "none", "reason": asked[name]["reason"]}
            continue
        with fleet.client() as api:
            done = api.wait_for_job(job["job_id"], timeout_s=timeout_s)
        result = dict(done.get("result") or {})
        result.pop("details", None)
        jobs[name] = {"job_id": done["job_id"], "status": done["status"], **result}
    return jobs


def promoted_model(fleet: FleetServer, folder: Path, version: str | None = None) -> OnnxModel:
    """The fleet's promoted model (or the registered ``version``), downloaded into ``folder``
    and checked against its sha256.

    Raises:
        CuratorError: no model is promoted.
        ApiError: ``version`` is not registered.
    """
    with fleet.client() as api:
        if version is None:
            info = api.latest_model()
            if info is None:
                raise CuratorError(f"the {fleet.name} server has no promoted model")
        else:
            info = next(m for m in api.list_models() if m.model_version == version)
        path = folder / f"{fleet.name}-{info.model_version}.onnx"
        if not path.exists():
            path.write_bytes(api.download_model(info.model_version, sha256=info.sha256))
    return OnnxModel(path, intra_op_threads=1)


def camera_parts(
    share: float, cams: list[CameraRound], device_ids: list[str], folder: Path, offline: int
) -> list[list[CameraPart]]:
    """Write each camera's round as PNG folders: the ``offline`` camera's first ``share`` of
    frames in ``offline/`` (run without a link), the rest in ``online/``."""
    parts = []
    for cam, device in zip(cams, device_ids, strict=True):
        if cam.device == offline and share > 0:
            cut = int(len(cam.frames) * share)
            write_frames(cam.frames[:cut], folder / device / "offline")
            write_frames(cam.frames[cut:], folder / device / "online")
            parts.append([CameraPart(device, folder / device / "offline", False),
                          CameraPart(device, folder / device / "online", True)])  # fmt: skip
        else:
            write_frames(cam.frames, folder / device / "online")
            parts.append([CameraPart(device, folder / device / "online", True)])
    return parts
