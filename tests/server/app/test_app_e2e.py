"""End to end: ``python -m server serve`` as a real process on 127.0.0.1, stopped by SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[3]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.mark.integration
def test_serve_answers_whoami_and_stops_on_sigterm(tmp_path: Path) -> None:
    data, port = tmp_path / "data", free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CURATOR_SERVER_")}
    created = subprocess.run(
        [sys.executable, "-m", "server", "token", "create", "--role", "device",
         "--device-id", "cam-01", "--data-dir", str(data)],
        cwd=ROOT, capture_output=True, text=True, timeout=60, env=env, check=True,
    )  # fmt: skip
    token = created.stdout.strip()
    log_path = tmp_path / "server.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "server", "serve", "--port", str(port),
             "--data-dir", str(data)],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, "server did not come up in 30 s"
            time.sleep(0.1)
        r = httpx.get(f"{base}/v1/whoami", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200
        assert r.json()["role"] == "device" and r.json()["device_id"] == "cam-01"
        assert httpx.get(f"{base}/v1/whoami").status_code == 401
        assert httpx.get(f"{base}/readyz").status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
    assert code == 0, log_path.read_text()
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    requests = [line for line in lines if line["logger"] == "server.requests"]
    assert [r["path"] for r in requests][-3:] == ["/v1/whoami", "/v1/whoami", "/readyz"]
    assert requests[-3]["device_id"] == "cam-01"
    assert token not in log_path.read_text()
    assert any(line["message"] == "server stopped" for line in lines)
