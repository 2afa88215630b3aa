"""Fixtures for the warehouse tests: a real fakesnow server, and every sink of the contract.

:class:`FakeSnowServer` runs fakesnow's HTTP app (the one ``python -m fakesnow -s`` serves) under
uvicorn in a subprocess on 127.0.0.1 and a free port, its databases in files under a data folder.
The test process drives it over stdin: ``stop`` closes the listening socket and forgets every
session (clients then get "connection refused", and afterwards "401, log in again", as after a
Snowflake outage or restart), ``start`` listens again on the same port with the same data. The
outage tests stop and restart it in about 0.3 s instead of paying fakesnow's 2 s import again.

Why not ``python -m fakesnow -s -p PORT -d DIR`` itself: in server mode (fakesnow 0.12.1) the
CLI ignores ``-d`` and every session shares one in-memory database, so a restarted server would
come back empty, and it has no way to stop listening without exiting.
"""

from __future__ import annotations

import datetime as dt
import select
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from server.warehouse import MetadataSink, SqliteSink
from server.warehouse.snowflake import SnowflakeSink

_SERVE = """
import sys, threading, time
import uvicorn
import fakesnow.server as app_module
from fakesnow.instance import FakeSnow

control, sys.stdout = sys.stdout, sys.stderr  # stdout carries only the control words
db_path, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
app_module.shared_fs = FakeSnow(db_path=db_path)
running = None

def say(word):
    print("fakesnow-control:", word, file=control, flush=True)

def start():
    global running
    config = uvicorn.Config(app_module.app, host=host, port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            say("failed")
            sys.exit(1)
        time.sleep(0.01)
    running = (server, thread)

def stop():
    global running
    if running:
        server, thread = running
        server.should_exit = True
        thread.join()
        running = None
    app_module.sessions.clear()  # a restarted service knows no session

start()
say("ready")
for line in sys.stdin:
    command = line.strip()
    if command == "stop":
        stop()
        say("stopped")
    elif command == "start":
        start()
        say("ready")
stop()
"""
HOST = "127.0.0.1"
DATABASE = "CURATOR_TEST"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class FakeSnowServer:
    """A fakesnow HTTP server in a subprocess, on a fixed port and data folder."""

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.proc: subprocess.Popen[str] | None = None
        self.listening = False
        self.log = data_dir / "fakesnow.log"

    def _expect(self, word: str, timeout: float) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.1)
            if not ready:
                continue
            line = self.proc.stdout.readline()
            if not line:
                break
            if line.strip() == f"fakesnow-control: {word}":
                return
        raise RuntimeError(f"fakesnow did not say {word!r}: {self.log.read_text()[-2000:]}")

    def start(self, timeout: float = 30.0) -> None:
        """Start the process, or make a stopped one listen again."""
        if self.listening:
            return
        if self.proc is None:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            with self.log.open("ab") as log:
                self.proc = subprocess.Popen(
                    [sys.executable, "-c", _SERVE, str(self.data_dir), HOST, str(self.port)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=log,
                    text=True,
                )
        else:
            self._send("start")
        self._expect("ready", timeout)
        self.listening = True

    def _send(self, command: str) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop listening and forget every session; the data stays."""
        if self.listening:
            self._send("stop")
            self._expect("stopped", timeout)
            self.listening = False

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        """End the process."""
        proc, self.proc = self.proc, None
        self.listening = False
        if proc is None:
            return
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()

    def connect_kwargs(self) -> dict[str, Any]:
        """Arguments for ``snowflake.connector.connect`` (without database and schema, which
        :class:`SnowflakeSink` fills in)."""
        return {
            "user": "fake",
            "password": "snow-secret-password",
            "account": "fakesnow",
            "host": HOST,
            "port": self.port,
            "protocol": "http",
            "session_parameters": {"CLIENT_OUT_OF_BAND_TELEMETRY_ENABLED": False},
            # keep a down server from being retried inside the connector for minutes
            "login_timeout": 1,
            "network_timeout": 2,
        }


@pytest.fixture(scope="session")
def fakesnow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeSnowServer]:
    """One fakesnow server for the whole session; tests isolate themselves by schema."""
    server = FakeSnowServer(tmp_path_factory.mktemp("fakesnow"))
    server.start()
    yield server
    server.close()


@pytest.fixture
def outage_fakesnow(fakesnow_server: FakeSnowServer) -> Iterator[FakeSnowServer]:
    """The session's server, for a test that stops and restarts it; listening again after."""
    yield fakesnow_server
    fakesnow_server.start()


@pytest.fixture
def unstarted_fakesnow(tmp_path: Path) -> FakeSnowServer:
    """A server on a free port that nothing listens on."""
    return FakeSnowServer(tmp_path / "fakesnow")


def unique_schema() -> str:
    return f"T_{uuid.uuid4().hex[:12].upper()}"


SinkFactory = Callable[[], MetadataSink]


@pytest.fixture(params=["sqlite", "snowflake"])
def make_sink(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SinkFactory]:
    """Each MetadataSink, as a factory of sinks that all open the same (empty) store."""
    made: list[MetadataSink] = []
    if request.param == "sqlite":
        path = tmp_path / "warehouse.sqlite"

        def factory() -> MetadataSink:
            made.append(SqliteSink(path))
            return made[-1]

    else:
        server: FakeSnowServer = request.getfixturevalue("fakesnow_server")
        schema = unique_schema()

        def factory() -> MetadataSink:
            kwargs = server.connect_kwargs()
            made.append(SnowflakeSink(kwargs, DATABASE, schema, retries=1, sleep=lambda _: None))
            return made[-1]

    yield factory
    for sink in made:
        sink.close()


T0 = dt.datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=dt.UTC)


def _value(table: str, column: str, type_: str, i: int) -> Any:
    if column == "status" and table == "frames":
        return ("accepted", "duplicate", "rejected")[i % 3]
    if column == "method":
        return ("exact", "near")[i % 2]
    return {
        "text": f"{column}-{i:04d}",
        "integer": 1000 + i,
        "real": 0.5 + i / 8,
        "boolean": i % 2 == 0,
        "timestamp": T0 + dt.timedelta(minutes=i, microseconds=i),
        "json": {"i": i, "tags": ["a", "b"], "nested": {"x": i / 4, "ok": True, "none": None}},
    }[type_]


def sample_rows(table: str, n: int, start: int = 0) -> list[dict[str, Any]]:
    """``n`` distinct, fully populated rows of ``table`` with keys ``start .. start + n - 1``."""
    from server.warehouse import TABLES

    spec = TABLES[table]
    return [
        {c.name: _value(table, c.name, c.type, i) for c in spec.columns}
        for i in range(start, start + n)
    ]


@pytest.fixture
def rows_of() -> Callable[..., list[dict[str, Any]]]:
    """``(table, n, start=0) -> rows``: distinct, fully populated sample rows."""
    return sample_rows
