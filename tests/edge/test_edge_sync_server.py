"""The uploader against a REAL server (``python -m server serve`` on 127.0.0.1, CLI tokens):
a buffer drains exactly once into the catalog, through a SIGKILL of the server and through a
server that is not up yet; a wrong token stops with a clear message; heartbeats are acked.

The oracle is the server's catalog file, read read-only: ``uploads`` must map every buffered
``device_seq`` to its frame and ``frames`` hold each image exactly once, accepted. Frames carry
real JPEGs and random 32-d embeddings (pairwise far below the 0.95 dedup threshold), so every
frame must be accepted.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest
from testkit.edge import kept_frame
from testkit.images import jpeg
from testkit.server import ServeProcess, create_token

from curator.wire import DeviceHeartbeat
from edge_selector.buffer import FrameBuffer
from edge_selector.sync import SyncAuthError, Uploader

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tokens(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, str]]:
    """Per test server: its data folder and a device token issued by the CLI (in parallel:
    each folder is its own catalog)."""
    root = tmp_path_factory.mktemp("servers")
    devices = {"shared": "cam-a", "killed": "cam-k", "late": "cam-d"}
    with ThreadPoolExecutor(max_workers=3) as pool:
        issued = pool.map(lambda name: create_token(root / name, devices[name]), devices)
        return {name: (root / name, token) for name, token in zip(devices, issued, strict=True)}


class Server:
    """The started server the first tests share, its data folder and cam-a's token."""

    def __init__(self, data: Path, token: str) -> None:
        self.data, self.token = data, token
        self.process = ServeProcess(data, data.parent / "shared-logs")
        self.process.start()


@pytest.fixture(scope="module")
def shared(tokens: dict[str, tuple[Path, str]]) -> Iterator[Server]:
    server = Server(*tokens["shared"])
    yield server
    server.process.kill()


def fill(buf: FrameBuffer, n: int, first_image: int) -> dict[int, str]:
    """``n`` frames with real, distinct JPEGs and embeddings; ``{device_seq: frame_id}``."""
    for i in range(n):
        k = first_image + i
        frame = kept_frame((i % 7) / 10, seed=k, image=jpeg(k), width=16, height=12, dim=32)
        assert buf.add(frame).stored
    frames = buf.claim(n)
    buf.release(f.device_seq for f in frames)
    assert len(frames) == n
    return {f.device_seq: f.frame_id for f in frames}


def catalog(data_dir: Path, device: str) -> tuple[dict[int, str], Counter[str], Counter[str]]:
    """``uploads`` of ``device`` as ``{device_seq: frame_id}``, and the device's ``frames``
    rows counted by frame_id and by status."""
    uri = f"file:{data_dir / 'catalog.sqlite'}?mode=ro"
    with sqlite3.connect(uri, uri=True) as conn:
        uploads = dict(
            conn.execute(
                "SELECT device_seq, frame_id FROM uploads WHERE device_id = ?", (device,)
            ).fetchall()
        )
        rows = conn.execute(
            "SELECT frame_id, status FROM frames WHERE device_id = ?", (device,)
        ).fetchall()
    conn.close()
    return uploads, Counter(f for f, _ in rows), Counter(s for _, s in rows)


def check_exactly_once(data_dir: Path, device: str, expected: dict[int, str]) -> None:
    uploads, per_frame, per_status = catalog(data_dir, device)
    assert uploads == expected, "every buffered frame is uploaded, under its own device_seq"
    assert per_frame == Counter(expected.values()), "each image stored exactly once"
    assert per_status == {"accepted": len(expected)}


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> float:
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not {what} within {timeout} s")
        time.sleep(0.02)
    return time.monotonic() - start


class Running:
    """``uploader.run`` in a thread; ``stop()`` ends it and re-raises what it raised."""

    def __init__(self, uploader: Uploader) -> None:
        self.stop_event = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(uploader,), daemon=True)
        self.thread.start()

    def _run(self, uploader: Uploader) -> None:
        try:
            uploader.run(self.stop_event)
        except BaseException as exc:
            self.error = exc

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive()
        if self.error is not None:
            raise self.error


def test_a_buffer_syncs_completely_and_exactly_once(shared: Server, tmp_path: Path) -> None:
    with FrameBuffer(tmp_path / "buffer.db", max_bytes=16 * 2**20) as buf:
        expected = fill(buf, 30, first_image=1000)
        with Uploader(
            buf, server=shared.process.base, token=shared.token, device_id="cam-a",
            batch_frames=8,
        ) as uploader:  # fmt: skip
            outcomes = []
            while (out := uploader.upload_once()).sent:
                outcomes.append(out)
            assert [o.sent for o in outcomes] == [8, 8, 8, 6]
            assert all(o.error is None and o.http_status == 200 for o in outcomes)
            counters = uploader.counters
            assert (counters.accepted, counters.duplicates, counters.rejected) == (30, 0, {})
            stats = buf.stats()
            assert stats.frames == 0 and stats.uploaded == 30
    check_exactly_once(shared.data, "cam-a", expected)


def test_a_wrong_token_stops_with_a_clear_message(shared: Server, tmp_path: Path) -> None:
    with FrameBuffer(tmp_path / "buffer.db", max_bytes=16 * 2**20) as buf:
        fill(buf, 3, first_image=2000)
        base = shared.process.base
        with Uploader(buf, server=base, token="cur_not-a-token", device_id="cam-c") as bad:
            with pytest.raises(SyncAuthError, match=r"refused the device's token: HTTP 401") as e:
                bad.run(threading.Event())  # the loop stops, it does not retry
            assert "\n" not in str(e.value) and "cur_not-a-token" not in str(e.value)
            assert bad.counters.auth_errors == 1
        # a real token of another device: 403, the server's own words in the message
        other = Uploader(buf, server=base, token=shared.token, device_id="cam-c")
        with other, pytest.raises(SyncAuthError, match=r"HTTP 403 on /v1/batches: forbidden: "):
            other.upload_once()
        stats = buf.stats()
        assert stats.frames == 3 and stats.claimed == 0 and stats.dropped == {}
    uploads, _, _ = catalog(shared.data, "cam-c")
    assert uploads == {}


def test_heartbeats_are_acknowledged(shared: Server, tmp_path: Path) -> None:
    started = datetime.now(UTC)
    with FrameBuffer(tmp_path / "buffer.db", max_bytes=16 * 2**20) as buf:

        def heartbeat() -> DeviceHeartbeat:
            stats = buf.stats()
            return DeviceHeartbeat(
                device_id="cam-a", sent_at=datetime.now(UTC), started_at=started,
                software_version="0.1.0", counters={"frames.seen": 5},
                buffer_frames=stats.frames, buffer_bytes=stats.file_bytes,
                buffer_max_bytes=stats.max_bytes, last_device_seq=stats.last_device_seq,
            )  # fmt: skip

        with Uploader(
            buf, server=shared.process.base, token=shared.token, device_id="cam-a",
            heartbeat=heartbeat,
        ) as uploader:  # fmt: skip
            assert uploader.send_heartbeat(), uploader.last_error
            assert uploader.send_heartbeat(), uploader.last_error
            assert uploader.counters.heartbeats_sent == 2
            assert uploader.counters.heartbeat_errors == 0


def test_a_server_killed_mid_run_loses_and_duplicates_nothing(
    tokens: dict[str, tuple[Path, str]], tmp_path: Path
) -> None:
    data, token = tokens["killed"]
    server = ServeProcess(data, tmp_path / "logs")
    server.start()
    try:
        with FrameBuffer(tmp_path / "buffer.db", max_bytes=16 * 2**20) as buf:
            expected = fill(buf, 60, first_image=3000)
            uploader = Uploader(
                buf, server=server.base, token=token, device_id="cam-k", batch_frames=3,
                bandwidth_bytes_per_s=20_000, max_backoff_s=0.5, timeout_s=5,
            )  # fmt: skip
            running = Running(uploader)
            wait_for(lambda: buf.stats().uploaded >= 9, 20, "uploading")
            server.kill()
            wait_for(lambda: uploader.counters.transport_errors >= 1, 20, "failing")
            left = buf.stats().frames
            assert left > 0, "the server must die mid-run"
            wait_for(lambda: uploader.counters.transport_errors >= 2, 20, "failing again")
            assert buf.stats().frames == left  # nothing acked without an answer
            server.start()
            wait_for(lambda: buf.stats().frames == 0, 40, "drained after the restart")
            running.stop()
            uploader.close()
            counters = uploader.counters
            assert counters.uploaded == 60 and counters.duplicates == 0
            assert counters.released >= 3 and counters.rejected == {}
        check_exactly_once(data, "cam-k", expected)
    finally:
        server.kill()


def test_a_backlog_drains_once_the_server_comes_up(
    tokens: dict[str, tuple[Path, str]], tmp_path: Path
) -> None:
    data, token = tokens["late"]
    server = ServeProcess(data, tmp_path / "logs")  # nothing listens on its port yet
    try:
        with FrameBuffer(tmp_path / "buffer.db", max_bytes=16 * 2**20) as buf:
            expected = fill(buf, 20, first_image=4000)
            uploader = Uploader(
                buf, server=server.base, token=token, device_id="cam-d", batch_frames=8,
                max_backoff_s=2.0, timeout_s=5,
            )  # fmt: skip
            running = Running(uploader)
            wait_for(lambda: uploader.counters.transport_errors >= 3, 20, "failing")
            assert buf.stats().frames == 20 and uploader.counters.released >= 3 * 8
            assert "ConnectError" in (uploader.last_error or "")
            server.start()
            up = time.monotonic()
            wait_for(lambda: buf.stats().frames == 0, 60, "drained")
            assert time.monotonic() - up < 60
            running.stop()
            uploader.close()
            assert uploader.counters.uploaded == 20
        check_exactly_once(data, "cam-d", expected)
    finally:
        server.kill()
