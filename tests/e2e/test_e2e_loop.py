"""The whole loop with real processes: an edge selector uploads to a uvicorn server, labels go in
through the API, a worker trains, exports and promotes a model, and the selector's next uploads
carry the new model version.
"""

from __future__ import annotations

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
import pytest
from testkit.models import write_linear_onnx
from testkit.server import ROOT, ServeProcess, clean_env, create_token, issue_token
from testkit.videos import bikes_path

pytestmark = pytest.mark.integration

DEVICE = "cam-loop"


def _wait(what: str, timeout: float, probe: Callable[[], Any]) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout} s")


def _versions_uploaded(data: Path) -> set[str]:
    """Model versions of the device's uploads, as the warehouse logged each one (an image the
    server had seen before keeps its first catalog row, but every upload gets its own log)."""
    path = data / "warehouse.sqlite"
    if not path.exists():
        return set()
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        try:
            rows = conn.execute(
                "SELECT DISTINCT model_version FROM frames WHERE device_id = ?", (DEVICE,)
            ).fetchall()
        except sqlite3.OperationalError:  # the drainer has not created the table yet
            return set()
        return {r[0] for r in rows}


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
    api = httpx.Client(base_url=server.base, timeout=30)
    try:
        _wait("lin-1 uploads", 90, lambda: "lin-1" in _versions_uploaded(data))
        labeled = 0
        while labeled < 30:  # label what the device sent, two classes by the model's guess
            tasks = api.post(
                "/v1/label-tasks/lease", json={"count": 10},
                headers={"Authorization": f"Bearer {labeler}"},
            ).json()["tasks"]  # fmt: skip
            if not tasks:
                time.sleep(0.5)
                continue
            for task in tasks:
                names = task["class_names"]
                answer = api.post(
                    "/v1/labels",
                    json={"frame_id": task["frame_id"], "class_name": names[labeled % 2],
                          "lease_id": task["lease_id"]},
                    headers={"Authorization": f"Bearer {labeler}"},
                )  # fmt: skip
                assert answer.status_code == 201, answer.text
                labeled += 1
        asked = api.post("/v1/jobs/fine-tune", headers={"Authorization": f"Bearer {admin}"})
        assert asked.status_code == 202, asked.text
        job_id = asked.json()["job"]["job_id"]

        def finished() -> dict[str, Any] | None:
            job = api.get(f"/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {admin}"})
            body: dict[str, Any] = job.json()
            return body if body["status"] in ("succeeded", "failed") else None

        job = _wait("the fine-tuning job", 240, finished)
        assert job["status"] == "succeeded", (job, (tmp_path / "worker.log").read_text()[-3000:])
        new_version = job["result"]["model_version"]
        assert job["result"]["promoted"], job
        latest = api.get("/v1/models/latest", headers={"Authorization": f"Bearer {device_token}"})
        assert latest.json()["model_version"] == new_version
        _wait(f"uploads of {new_version}", 90, lambda: new_version in _versions_uploaded(data))
        assert selector.poll() is None
    finally:
        api.close()
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
