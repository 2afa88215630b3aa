"""Fixtures for the end-to-end tests: real ``python -m server serve`` processes, CLI tokens and
the fakesnow server of the warehouse tests.

:class:`ServeProcess` runs the server on 127.0.0.1 and a free port; it can be SIGKILLed and
started again on the same data folder and port. :class:`FakeSnowServer` is loaded from
tests/server/warehouse/conftest.py by path (test folders are not packages).
"""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[3]
HOST = "127.0.0.1"


def _load_warehouse_conftest() -> Any:
    path = ROOT / "tests" / "server" / "warehouse" / "conftest.py"
    spec = importlib.util.spec_from_file_location("_e2e_warehouse_helpers", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_warehouse = _load_warehouse_conftest()
FakeSnowServer = _warehouse.FakeSnowServer


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


def _create_token(data_dir: Path, device_id: str) -> str:
    """A device token issued by the CLI (``token create``), as printed on stdout."""
    done = subprocess.run(
        [sys.executable, "-m", "server", "token", "create", "--role", "device",
         "--device-id", device_id, "--data-dir", str(data_dir)],
        cwd=ROOT, capture_output=True, text=True, timeout=60, env=clean_env(), check=True,
    )  # fmt: skip
    token = done.stdout.strip()
    assert token.startswith("cur_"), done.stdout
    return token


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


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Any]:
    """``serve(env=None) -> ServeProcess`` on ``tmp_path/data`` (not started); all are killed
    at teardown."""
    made: list[ServeProcess] = []

    def make(env: Mapping[str, str] | None = None) -> ServeProcess:
        made.append(ServeProcess(tmp_path / "data", tmp_path / "logs", env))
        return made[-1]

    yield make
    for process in made:
        process.kill()


@pytest.fixture
def fakesnow(tmp_path: Path) -> Iterator[Any]:
    """A started fakesnow server of this test alone (``.database``: the database to use,
    ``.schema()``: a fresh schema name), closed at teardown."""
    server = FakeSnowServer(tmp_path / "fakesnow")
    server.database = _warehouse.DATABASE
    server.schema = _warehouse.unique_schema
    server.start()
    try:
        yield server
    finally:
        server.close()


def _create_tokens(data_dir: Path, device_ids: Sequence[str]) -> dict[str, str]:
    """device_id -> token: the first issued alone (it creates the catalog), the rest at once."""
    tokens = {device_ids[0]: _create_token(data_dir, device_ids[0])}
    with ThreadPoolExecutor(max_workers=4) as pool:
        rest = list(pool.map(lambda d: _create_token(data_dir, d), device_ids[1:]))
    tokens.update(zip(device_ids[1:], rest, strict=True))
    return tokens


@pytest.fixture
def create_tokens() -> Any:
    """``create_tokens(data_dir, device_ids) -> {device_id: token}``, issued by the CLI
    (``curator-server token create --role device``)."""
    return _create_tokens
