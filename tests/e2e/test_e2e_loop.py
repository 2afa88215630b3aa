"""The whole loop with real processes: an edge selector uploads to a uvicorn server, labels go in
through the API, a worker trains, exports and promotes a model, and the selector's next uploads
carry the new model version (must-show 5). Then the gate (must-show 6): corrections shuffle the
training frames' labels, the candidate trained on them is registered but not promoted, and the
selector keeps the promoted model.

Labels follow a rule a small CNN can learn from the pixels (a frame brighter than the median of
the labeled frames is one class, darker the other), so the promoted model beats chance on the
held-out frames and a candidate trained on swapped labels falls below it.
"""

from __future__ import annotations

import io
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image
from testkit.models import write_linear_onnx
from testkit.server import ROOT, ServeProcess, clean_env, create_token, issue_token
from testkit.videos import bikes_path

from server.jobs.fine_tune import is_held_out

pytestmark = pytest.mark.integration

DEVICE = "cam-loop"
N_LABELS = 30


def _wait(what: str, timeout: float, probe: Callable[[], Any]) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout} s")


def _uploads_by_version(data: Path) -> dict[str, int]:
    """Model version -> uploads of the device, as the warehouse logged each one (an image the
    server had seen before keeps its first catalog row, but every upload gets its own log)."""
    path = data / "warehouse.sqlite"
    if not path.exists():
        return {}
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        try:
            rows = conn.execute(
                "SELECT model_version, count(*) FROM frames WHERE device_id = ?"
                " GROUP BY model_version",
                (DEVICE,),
            ).fetchall()
        except sqlite3.OperationalError:  # the drainer has not created the table yet
            return {}
        return {r[0]: int(r[1]) for r in rows}


def _versions_uploaded(data: Path) -> set[str]:
    return set(_uploads_by_version(data))


class _Api:
    """The server's HTTP API as the labeling team and an admin use it."""

    def __init__(self, base: str, labeler: str, admin: str) -> None:
        self.client = httpx.Client(base_url=base, timeout=30)
        self.labeler = {"Authorization": f"Bearer {labeler}"}
        self.admin = {"Authorization": f"Bearer {admin}"}

    def lease_tasks(self, count: int) -> list[dict[str, Any]]:
        """``count`` label tasks, waiting for the device's uploads when there are fewer."""
        tasks: list[dict[str, Any]] = []
        deadline = time.monotonic() + 90
        while len(tasks) < count:
            assert time.monotonic() < deadline, f"only {len(tasks)} tasks within 90 s"
            got = self.client.post(
                "/v1/label-tasks/lease", json={"count": count - len(tasks)}, headers=self.labeler
            ).json()["tasks"]
            tasks += got
            if not got:
                time.sleep(0.5)
        return tasks

    def brightness(self, frame_id: str) -> float:
        image = self.client.get(f"/v1/frames/{frame_id}/image", headers=self.labeler)
        assert image.status_code == 200, image.text
        with Image.open(io.BytesIO(image.content)) as opened:
            return float(np.asarray(opened.convert("L"), dtype=np.float32).mean())

    def label(self, frame_id: str, class_name: str, lease_id: str | None = None) -> None:
        answer = self.client.post(
            "/v1/labels",
            json={"frame_id": frame_id, "class_name": class_name, "lease_id": lease_id},
            headers=self.labeler,
        )
        assert answer.status_code == 201, answer.text

    def fine_tune(self, logs: Path) -> dict[str, Any]:
        """Ask for a run as an admin and wait for the job to end; returns the job."""
        asked = self.client.post("/v1/jobs/fine-tune", headers=self.admin)
        assert asked.status_code == 202, asked.text
        job_id = asked.json()["job"]["job_id"]

        def finished() -> dict[str, Any] | None:
            body: dict[str, Any] = self.client.get(f"/v1/jobs/{job_id}", headers=self.admin).json()
            return body if body["status"] in ("succeeded", "failed") else None

        job: dict[str, Any] = _wait("the fine-tuning job", 240, finished)
        assert job["status"] == "succeeded", (job, logs.read_text()[-3000:])
        return job


def test_selector_uploads_labels_train_promote_and_the_selector_switches(tmp_path: Path) -> None:
    data = tmp_path / "data"
    device_token = create_token(data, DEVICE)
    labeler, admin = issue_token(data, "labeler")[0], issue_token(data, "admin")[0]
    server = ServeProcess(data, tmp_path / "logs")
    server.start()
    env = clean_env()
    env.pop("CURATOR_EDGE_TOKEN", None)
    env["CURATOR_EDGE_TOKEN"] = device_token
    model = write_linear_onnx(tmp_path / "lin.onnx", size=32, version="lin-1")
    worker_log = (tmp_path / "worker.log").open("wb")
    selector_log = (tmp_path / "selector.log").open("wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "server", "worker", "--data-dir", str(data), "--log-format", "text"],
        cwd=ROOT, stdout=worker_log, stderr=subprocess.STDOUT, env=clean_env(),
    )  # fmt: skip
    selector = subprocess.Popen(
        [sys.executable, "-m", "edge_selector", "run", "--source", str(bikes_path()), "--loop",
         "--fps", "60", "--model", str(model), "--buffer", str(tmp_path / "edge.db"),
         "--server", server.base, "--device-id", DEVICE, "--keep-ratio", "0.5",
         "--duplicate-similarity", "1.5", "--model-poll-s", "1", "--progress", "off"],
        cwd=ROOT, stdout=selector_log, stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    api = _Api(server.base, labeler, admin)
    try:
        _wait("lin-1 uploads", 90, lambda: "lin-1" in _versions_uploaded(data))
        tasks = api.lease_tasks(N_LABELS)
        names = tasks[0]["class_names"]
        light = {t["frame_id"]: api.brightness(t["frame_id"]) for t in tasks}
        median = float(np.median(list(light.values())))
        truth = {f: names[int(v > median)] for f, v in light.items()}
        for task in tasks:
            api.label(task["frame_id"], truth[task["frame_id"]], task["lease_id"])
        job = api.fine_tune(tmp_path / "worker.log")
        new_version = job["result"]["model_version"]
        assert job["result"]["promoted"], job
        device = {"Authorization": f"Bearer {device_token}"}
        latest = api.client.get("/v1/models/latest", headers=device)
        assert latest.json()["model_version"] == new_version
        _wait(f"uploads of {new_version}", 90, lambda: new_version in _versions_uploaded(data))

        # must-show 6: the training frames' labels swapped between the classes (a shuffle of
        # the labels that moves every one), the held-out frames' kept; the candidate is worse
        train = sorted(f for f in truth if not is_held_out(f))
        for frame_id in train:
            api.label(frame_id, names[1 - names.index(truth[frame_id])])
        bad = api.fine_tune(tmp_path / "worker.log")
        candidate = bad["result"]["model_version"]
        assert candidate != new_version and bad["result"]["promoted"] is False, bad
        reason = bad["result"]["details"]["gate_reason"]
        assert reason.startswith("not promoted"), bad
        current = bad["result"]["details"]["current_metrics"]
        assert bad["result"]["metrics"]["accuracy"] < current["accuracy"] - 0.02, bad
        listed = api.client.get("/v1/models", headers=api.admin)
        registered = {m["model_version"]: m for m in listed.json()}
        assert registered[candidate]["promoted"] is False, listed.text  # kept, not promoted
        still = api.client.get("/v1/models/latest", headers=device)
        assert still.json()["model_version"] == new_version
        assert still.headers["etag"] == latest.headers["etag"]
        # the selector keeps uploading with the promoted model and never fetches the candidate
        before = _uploads_by_version(data).get(new_version, 0)
        _wait(
            "more uploads of the promoted model",
            60,
            lambda: _uploads_by_version(data).get(new_version, 0) > before + 5,
        )
        assert candidate not in _versions_uploaded(data)
        models_dir = tmp_path / "edge.db.models"
        assert not list(models_dir.glob(f"{candidate}*")), list(models_dir.iterdir())
        assert candidate not in (tmp_path / "selector.log").read_text()
        assert selector.poll() is None
    finally:
        api.client.close()
        for proc in (selector, worker):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in (selector, worker):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        server.kill()
        worker_log.close()
        selector_log.close()
    assert selector.returncode == 0, (tmp_path / "selector.log").read_text()[-3000:]
