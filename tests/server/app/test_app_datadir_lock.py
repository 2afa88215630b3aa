"""One server per data folder: the ``server.lock`` flock, in process and with real ``python -m
server serve`` processes (a second one exits 1 with one line; SIGKILL frees the folder)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from curator.errors import InvalidInputError
from server.app.services import ServerServices
from server.cli import main
from server.datadir import LOCK_FILE_NAME, DataDirLock
from server.errors import DataDirInUse
from server.settings import ServerSettings, load_settings

ROOT = Path(__file__).resolve().parents[3]


def settings_for(data: Path) -> ServerSettings:
    return load_settings({"data_dir": data}, None, {})


def test_lock_writes_the_pid_and_a_second_acquire_fails(tmp_path: Path) -> None:
    data = tmp_path / "new" / "data"
    lock = DataDirLock.acquire(data)  # creates the folder
    assert lock.held and (data / LOCK_FILE_NAME).read_text() == f"{os.getpid()}\n"
    with pytest.raises(DataDirInUse) as caught:
        DataDirLock.acquire(data)
    message = str(caught.value)
    assert "\n" not in message
    assert repr(str(data)) in message and f"pid {os.getpid()}" in message
    lock.release()
    lock.release()  # idempotent
    assert not lock.held and (data / LOCK_FILE_NAME).read_text() == ""
    with DataDirLock.acquire(data) as again:
        assert again.held
    assert not again.held


def test_an_empty_lock_file_names_no_pid(tmp_path: Path) -> None:
    import fcntl

    (tmp_path / LOCK_FILE_NAME).touch()
    fd = os.open(tmp_path / LOCK_FILE_NAME, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # a holder that has not written its pid yet
        with pytest.raises(DataDirInUse, match="pid unknown"):
            DataDirLock.acquire(tmp_path)
    finally:
        os.close(fd)


def test_second_services_on_one_folder_fail_until_the_first_closes(tmp_path: Path) -> None:
    settings = settings_for(tmp_path / "data")
    first = ServerServices.open(settings)
    try:
        with pytest.raises(
            DataDirInUse, match=f"in use by another curator server.*pid {os.getpid()}"
        ):
            ServerServices.open(settings)
        # the token commands do not take the lock: they work while a server runs
        assert (
            main(["token", "create", "--role", "admin", "--data-dir", str(settings.data_dir)], {})
            == 0
        )
        assert main(["token", "list", "--data-dir", str(settings.data_dir)], {}) == 0
    finally:
        first.close()
    second = ServerServices.open(settings)
    second.close()
    assert second.lock is not None and not second.lock.held


def test_a_lock_passed_in_stays_with_the_caller(tmp_path: Path) -> None:
    settings = settings_for(tmp_path / "data")
    with DataDirLock.acquire(settings.data_dir) as lock:
        services = ServerServices.open(settings, lock=lock)
        assert services.lock is None
        services.close()
        assert lock.held  # the caller releases it
        with pytest.raises(DataDirInUse):
            ServerServices.open(settings)
        with pytest.raises(InvalidInputError, match="held lock"):
            ServerServices.open(settings_for(tmp_path / "other"), lock=lock)
    with pytest.raises(InvalidInputError, match="held lock"):
        ServerServices.open(settings, lock=lock)  # released


def test_a_failed_open_releases_the_lock(tmp_path: Path) -> None:
    settings = settings_for(tmp_path / "data")
    settings.data_dir.mkdir()
    settings.catalog_path.mkdir()  # a folder where the catalog file should be
    with pytest.raises(Exception):  # noqa: B017 - whatever the catalog raises
        ServerServices.open(settings)
    DataDirLock.acquire(settings.data_dir).release()  # free again


# --- real processes ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("CURATOR_SERVER_")}


def serve_args(data: Path, port: int) -> list[str]:
    return [sys.executable, "-m", "server", "serve", "--data-dir", str(data),
            "--port", str(port), "--log-format", "text"]  # fmt: skip


def start_server(data: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            serve_args(data, port), cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=clean_env()
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return proc, base
        except httpx.TransportError:
            pass
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, f"server not up in 30 s:\n{log.read_text()}"
        time.sleep(0.05)


def kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


@pytest.mark.integration
def test_second_serve_exits_with_one_line_and_sigkill_frees_the_folder(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first, base = start_server(data, tmp_path / "first.log")
    try:
        started = time.monotonic()
        second = subprocess.run(
            serve_args(data, free_port()),
            cwd=ROOT, capture_output=True, text=True, timeout=60, env=clean_env(),
        )  # fmt: skip
        elapsed = time.monotonic() - started
        assert second.returncode == 1, second.stderr
        assert second.stderr.count("\n") == 1 and "Traceback" not in second.stderr
        assert second.stderr.startswith(f"curator-server: error: data dir {str(data)!r} is in use")
        assert f"pid {first.pid}" in second.stderr
        assert elapsed < 20, f"the second server took {elapsed:.1f} s to give up"
        assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200  # first unharmed
        listed = subprocess.run(
            [sys.executable, "-m", "server", "token", "list", "--data-dir", str(data)],
            cwd=ROOT, capture_output=True, text=True, timeout=60, env=clean_env(),
        )  # fmt: skip
        assert listed.returncode == 0 and listed.stdout.startswith("token_id"), listed.stderr
    finally:
        kill(first)
    assert (data / LOCK_FILE_NAME).read_text() == f"{first.pid}\n"  # stale pid, free lock
    third, base = start_server(data, tmp_path / "third.log")
    try:
        assert httpx.get(f"{base}/readyz", timeout=5).status_code == 200
        assert (data / LOCK_FILE_NAME).read_text() == f"{third.pid}\n"
    finally:
        kill(third)
