"""A real ``python -m server serve`` process for end-to-end tests of the server and the edge.

:class:`ServeProcess` runs the server on 127.0.0.1 and a free port; it can be SIGKILLed and
started again on the same data folder and port. :func:`create_token` issues a device token with
the CLI, as an operator would.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

__all__ = [
    "HOST",
    "ROOT",
    "ServeProcess",
    "clean_env",
    "create_token",
    "free_port",
    "issue_token",
]

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment without any CURATOR_SERVER_* variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CURATOR_SERVER_")}
    env.update(extra or {})
    return env


def issue_token(data_dir: Path, role: str, device_id: str | None = None) -> tuple[str, str]:
    """(token, token id) issued by ``python -m server token create``, as an operator would."""
    device = ["--device-id", device_id] if device_id else []
    done = subprocess.run(
        [sys.executable, "-m", "server", "token", "create", "--role", role, *device,
         "--data-dir", str(data_dir)],
        cwd=ROOT, capture_output=True, text=True, timeout=60, env=clean_env(), check=True,
    )  # fmt: skip
    token, token_id = done.stdout.strip(), done.stderr.strip().removeprefix("token id: ")
    assert token.startswith("cur_") and token_id.startswith("tok_"), (done.stdout, done.stderr)
    return token, token_id


def create_token(data_dir: Path, device_id: str) -> str:
    """A device token for ``device_id`` (:func:`issue_token`)."""
    return issue_token(data_dir, "device", device_id)[0]


class ServeProcess:
    """``python -m server serve`` on a fixed data folder and port; logs under ``log_dir``."""

    def __init__(self, data_dir: Path, log_dir: Path, env: Mapping[str, str] | None = None) -> None:
        self.data_dir, self.log_dir = data_dir, log_dir
        self.port = free_port()
        self.env = clean_env(env)
        self.base = f"http://{HOST}:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def log_text(self) -> str:
        return "\n".join(p.read_text() for p in sorted(self.log_dir.glob("serve-*.log")))

    def start(self, timeout: float = 30.0) -> None:
        """Start the process and wait until ``/healthz`` answers 200."""
        assert self.proc is None
        self.starts += 1
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with (self.log_dir / f"serve-{self.starts}.log").open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "server", "serve", "--host", HOST,
                 "--port", str(self.port), "--data-dir", str(self.data_dir),
                 "--log-format", "text"],
                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=self.env,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited on start:\n{self.log_text[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"server not up in {timeout} s:\n{self.log_text[-3000:]}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL, no shutdown of any kind."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        if proc is not None:
            proc.wait(timeout=30)

    def stop(self) -> int:
        """SIGTERM and wait (graceful); SIGKILL after 20 s. Returns the exit status."""
        proc, self.proc = self.proc, None
        if proc is None:
            return 0
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise

    def metric(self, name: str) -> float:
        text = httpx.get(f"{self.base}/metrics", timeout=10).text
        match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
        assert match is not None, f"{name} missing from /metrics"
        return float(match.group(1))

    def wait_drained(self, timeout: float) -> float:
        """Poll ``curator_server_outbox_pending_rows`` until 0; returns the seconds waited."""
        start = time.monotonic()
        while True:
            pending = self.metric("curator_server_outbox_pending_rows")
            if pending == 0:
                return time.monotonic() - start
            if time.monotonic() - start > timeout:
                raise AssertionError(
                    f"outbox still holds {pending} rows after {timeout} s:\n{self.log_text[-3000:]}"
                )
            time.sleep(0.2)
