"""The demo's processes: a ``curator-server serve`` and a ``curator-server worker`` per fleet, and
``edge-selector run`` per camera, all on 127.0.0.1, started through their command lines as an
operator would and stopped at the end (also on Ctrl-C or an error) by :class:`ProcessGroup`.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from curator.client import CuratorClient
from curator.demo.config import DemoConfig
from curator.errors import CuratorError

__all__ = [
    "HOST",
    "FleetServer",
    "ProcessGroup",
    "SelectorRun",
    "closed_port_url",
    "command",
    "free_port",
    "parse_summary",
]

HOST = "127.0.0.1"
_TRAIN_NEVER = str(10**9)  # the demo asks for each fine-tuning run itself, once per round


def command(script: str, module: str) -> list[str]:
    """How to start one of the project's command lines: the console script next to this
    Python, else one on PATH, else ``python -m module``."""
    beside = Path(sys.executable).parent / script
    if beside.exists():
        return [str(beside)]
    found = shutil.which(script)
    return [found] if found else [sys.executable, "-m", module]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def closed_port_url() -> str:
    """A server URL nothing answers on: a camera given it is offline."""
    return f"http://{HOST}:{free_port()}"


class ProcessGroup:
    """Child processes that are stopped together: SIGTERM, then SIGKILL after ``grace_s``.

    Use it as a context manager; leaving it (normally, on an error or on Ctrl-C) stops every
    process still running, newest first.
    """

    def __init__(self, grace_s: float = 20.0) -> None:
        self.grace_s = grace_s
        self._procs: list[subprocess.Popen[bytes]] = []

    def start(
        self, args: list[str], log: Path, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start ``args`` with stdout and stderr appended to ``log``."""
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)
        self._procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes]) -> int:
        """SIGTERM ``proc`` and wait; SIGKILL when it outlives the grace period."""
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=self.grace_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc in self._procs:
            self._procs.remove(proc)
        return int(proc.returncode)

    def __enter__(self) -> ProcessGroup:
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in reversed(list(self._procs)):
            self.stop(proc)


@dataclass
class FleetServer:
    """One fleet's server and worker, with its tokens.

    Attributes:
        name: the fleet (``curated`` or ``random``).
        data_dir: the server's data folder.
        base_url: where it listens.
        admin, labeler: tokens of those roles.
        device_tokens: device id -> its token.
        env: the environment of its processes (:func:`server_env`).
    """

    name: str
    data_dir: Path
    base_url: str
    admin: str
    labeler: str
    device_tokens: dict[str, str]
    group: ProcessGroup
    env: dict[str, str]
    serve_proc: subprocess.Popen[bytes] | None = None

    def client(self, role: str = "admin", device_id: str | None = None) -> CuratorClient:
        """A :class:`CuratorClient` with the ``admin``, ``labeler`` or a device's token."""
        token = self.device_tokens[device_id] if device_id else getattr(self, role)
        return CuratorClient(self.base_url, token, timeout=120.0)

    def serve(self, dedup_threshold: float, timeout_s: float = 60.0) -> None:
        """(Re)start ``curator-server serve`` on the fleet's data folder and port with this
        near-duplicate threshold; wait until it answers.

        Raises:
            CuratorError: it did not come up within ``timeout_s``.
        """
        if self.serve_proc is not None:
            self.group.stop(self.serve_proc)
        port = self.base_url.rsplit(":", 1)[1]
        log = self.data_dir.parent / "logs" / "serve.log"
        args = [*command("curator-server", "server"), "serve", "--host", HOST, "--port", port,
                "--data-dir", str(self.data_dir), "--dedup-threshold", str(dedup_threshold),
                "--log-format", "text"]  # fmt: skip
        self.serve_proc = self.group.start(args, log, self.env)
        _wait_healthy(self, self.serve_proc, log, timeout_s)


def _token(data_dir: Path, role: str, device_id: str | None, env: dict[str, str]) -> str:
    device = ["--device-id", device_id] if device_id else []
    args = [*command("curator-server", "server"), "token", "create", "--role", role, *device]
    done = subprocess.run(
        [*args, "--data-dir", str(data_dir)], capture_output=True, text=True, env=env, timeout=120
    )
    if done.returncode != 0:
        raise CuratorError(f"curator-server token create failed: {done.stderr.strip()[-500:]}")
    return done.stdout.strip()


def server_env(train_samples: int) -> dict[str, str]:
    """The environment of the demo's server processes: no ``CURATOR_SERVER_*`` from outside,
    no fine-tuning started by label counts (the demo asks once per round), and at least
    ``train_samples`` training samples per fine-tuning job."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CURATOR_SERVER_")}
    env["CURATOR_SERVER_TRAIN_EVERY_LABELS"] = _TRAIN_NEVER
    env["CURATOR_SERVER_TRAIN_MIN_SAMPLES"] = str(train_samples)
    return env


def start_fleet(
    group: ProcessGroup,
    name: str,
    root: Path,
    device_ids: list[str],
    *,
    dedup_threshold: float,
    train_samples: int = DemoConfig.train_samples,
) -> FleetServer:
    """Issue tokens, start ``serve`` and ``worker`` on a fresh data folder under ``root``.

    Raises:
        CuratorError: a token could not be issued, or the server did not come up.
    """
    data_dir, logs = root / "server-data", root / "logs"
    env = server_env(train_samples)
    admin = _token(data_dir, "admin", None, env)
    labeler = _token(data_dir, "labeler", None, env)
    devices = {d: _token(data_dir, "device", d, env) for d in device_ids}
    base_url = f"http://{HOST}:{free_port()}"
    fleet = FleetServer(name, data_dir, base_url, admin, labeler, devices, group, env)
    fleet.serve(dedup_threshold)
    worker = [*command("curator-server", "server"), "worker", "--data-dir", str(data_dir),
              "--log-format", "text"]  # fmt: skip
    group.start(worker, logs / "worker.log", env)
    return fleet


def _wait_healthy(
    fleet: FleetServer, proc: subprocess.Popen[bytes], log: Path, timeout_s: float
) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    with CuratorClient(fleet.base_url, timeout=2.0) as api:
        while True:
            try:
                api.health()
                return
            except (httpx.TransportError, CuratorError):
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
                raise CuratorError(f"the {fleet.name} server did not start:\n{tail}")
            time.sleep(0.1)


@dataclass(frozen=True)
class SelectorRun:
    """What one ``edge-selector run`` said in its closing summary.

    Attributes:
        seen, kept: frames decoded and frames kept in the buffer.
        uploaded: frames the server answered for (accepted + duplicates).
        server_duplicates: of those, near-duplicates the server dropped.
        dropped: frames the selector did not keep, by reason (``near_duplicate``,
            ``below_threshold``, ``no_credit`` ...).
    """

    seen: int = 0
    kept: int = 0
    uploaded: int = 0
    server_duplicates: int = 0
    dropped: dict[str, int] | None = None

    def __add__(self, other: SelectorRun) -> SelectorRun:
        dropped = dict(self.dropped or {})
        for k, v in (other.dropped or {}).items():
            dropped[k] = dropped.get(k, 0) + v
        return SelectorRun(
            self.seen + other.seen,
            self.kept + other.kept,
            self.uploaded + other.uploaded,
            self.server_duplicates + other.server_duplicates,
            dropped,
        )


_FRAMES = re.compile(r"^frames: (\d+) seen, (\d+) kept", re.MULTILINE)
_UPLOAD = re.compile(r"^upload: (\d+) acked \((\d+) duplicates\)", re.MULTILINE)
_DROPPED = re.compile(r"^dropped: (.*)$", re.MULTILINE)


def parse_summary(text: str) -> SelectorRun:
    """The last summary in an ``edge-selector run`` log (its closing lines on stderr).

    Raises:
        CuratorError: the log holds no summary (the run failed; the message quotes its end).
    """
    frames = list(_FRAMES.finditer(text))
    if not frames:
        raise CuratorError(f"edge-selector printed no summary:\n{text[-1500:]}")
    tail = text[frames[-1].start() :]
    upload = _UPLOAD.search(tail)
    dropped_line = _DROPPED.search(tail)
    dropped: dict[str, int] = {}
    if dropped_line and dropped_line.group(1) != "none":
        for part in dropped_line.group(1).split(", "):
            reason, _, count = part.rpartition(" ")
            dropped[reason] = int(count)
    return SelectorRun(
        seen=int(frames[-1].group(1)),
        kept=int(frames[-1].group(2)),
        uploaded=int(upload.group(1)) if upload else 0,
        server_duplicates=int(upload.group(2)) if upload else 0,
        dropped=dropped,
    )
