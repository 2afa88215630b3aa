"""The uploader's state machine, backoff and bandwidth cap: a real FrameBuffer on a real SQLite
file, the server faked in process through ``httpx.MockTransport`` (it decodes every body with
``curator.wire.decode_batch`` and answers per test), time and sleep faked so nothing sleeps."""

from __future__ import annotations

import json
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from testkit.edge import kept_frame

from curator.errors import InvalidInputError
from curator.wire import (
    COUNTER_PATTERN,
    MEDIA_TYPE,
    BatchResult,
    BatchUpload,
    DeviceHeartbeat,
    FrameResult,
    decode_batch,
)
from edge_selector.backoff import Backoff, BandwidthCap
from edge_selector.buffer import FrameBuffer
from edge_selector.sync import SyncAuthError, Uploader
from edge_selector.sync_outcomes import batch_id_for

SERVER = "http://curator.test"
TOKEN = "cur_secret-token"
DEVICE = "cam-1"

Answer = Callable[[BatchUpload], httpx.Response]


class FakeTime:
    """A clock that only moves when someone sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class FakeServer:
    """``POST /v1/batches`` and ``/v1/heartbeats`` answered by ``self.answer`` / ``self.beat``."""

    def __init__(self) -> None:
        self.batches: list[BatchUpload] = []
        self.bodies: list[bytes] = []
        self.requests: list[httpx.Request] = []
        self.heartbeats: list[DeviceHeartbeat] = []
        self.answer: Answer = accept_all
        self.beat: Callable[[DeviceHeartbeat], httpx.Response] = ack_heartbeat

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path == "/v1/heartbeats":
            beat = DeviceHeartbeat.model_validate_json(request.content)
            self.heartbeats.append(beat)
            return self.beat(beat)
        assert request.url.path == "/v1/batches"
        batch = decode_batch(request.content)
        self.batches.append(batch)
        self.bodies.append(request.content)
        return self.answer(batch)

    def sizes(self) -> list[int]:
        return [len(b.frames) for b in self.batches]


def result(batch: BatchUpload, status: Callable[[int], str | None]) -> httpx.Response:
    """A 200 answering each frame with ``status(seq)`` (None: left out)."""
    results = []
    for f in batch.frames:
        s = status(f.device_seq)
        if s == "accepted":
            results.append(
                FrameResult(frame_id=f.frame_id, device_seq=f.device_seq, status="accepted")
            )
        elif s == "duplicate":
            results.append(
                FrameResult(
                    frame_id=f.frame_id,
                    device_seq=f.device_seq,
                    status="duplicate",
                    duplicate_of="a" * 64,
                    similarity=0.99,
                )
            )
        elif s is not None:
            results.append(
                FrameResult(
                    frame_id=f.frame_id, device_seq=f.device_seq, status="rejected", reason=s
                )
            )
    body = BatchResult(batch_id=batch.batch_id, results=tuple(results)).model_dump_json()
    return httpx.Response(200, content=body, headers={"Content-Type": "application/json"})


def accept_all(batch: BatchUpload) -> httpx.Response:
    return result(batch, lambda seq: "accepted")


def error(
    status: int, code: str = "nope", message: str = "refused", **headers: str
) -> httpx.Response:
    return httpx.Response(
        status, json={"error": {"code": code, "message": message}}, headers=headers
    )


def ack_heartbeat(beat: DeviceHeartbeat) -> httpx.Response:
    now = datetime.now(UTC).isoformat()
    return httpx.Response(
        200, json={"device_id": beat.device_id, "received_at": now, "duplicate": False}
    )


@pytest.fixture
def server() -> FakeServer:
    return FakeServer()


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def buffer(tmp_path: Path) -> Iterator[FrameBuffer]:
    with FrameBuffer(tmp_path / "buffer.db", max_bytes=16 * 2**20) as buf:
        yield buf


def fill(buf: FrameBuffer, n: int) -> list[int]:
    """``n`` frames of distinct values (seq i has value i / 1000: the newest is worth most)."""
    return [
        buf.add(kept_frame(i / 1000, size=300, seed=i)).device_seq or 0 for i in range(1, n + 1)
    ]


@pytest.fixture
def make_uploader(
    buffer: FrameBuffer, server: FakeServer, fake_time: FakeTime
) -> Iterator[Callable[..., Uploader]]:
    made: list[tuple[Uploader, httpx.Client]] = []

    def make(**kwargs: object) -> Uploader:
        client = httpx.Client(transport=httpx.MockTransport(server.handle))
        options: dict[str, object] = {
            "server": SERVER,
            "token": TOKEN,
            "device_id": DEVICE,
            "clock": fake_time.clock,
            "sleep": fake_time.sleep,
            "rng": 7,
            "client": client,
        }
        options.update(kwargs)
        uploader = Uploader(buffer, **options)  # type: ignore[arg-type]
        made.append((uploader, client))
        return uploader

    yield make
    for uploader, client in made:
        uploader.close()
        client.close()


def drain(uploader: Uploader, most: int = 100) -> int:
    """Call upload_once until the buffer is empty; returns the calls made."""
    for calls in range(1, most + 1):
        if uploader.upload_once().sent == 0:
            return calls
    raise AssertionError(f"buffer not drained in {most} calls")


# -- Backoff -------------------------------------------------------------------------------


def test_backoff_ceiling_doubles_from_base_up_to_the_cap_and_resets() -> None:
    backoff = Backoff(0.5, 60.0, rng=0)
    ceilings = []
    for _ in range(12):
        ceilings.append(backoff.ceiling())
        assert 0.0 <= backoff.next_delay() < ceilings[-1]
    assert ceilings == [0.5, 1, 2, 4, 8, 16, 32, 60, 60, 60, 60, 60]
    backoff.reset()
    assert backoff.failures == 0 and backoff.ceiling() == 0.5
    assert backoff.next_delay() < 0.5


def test_backoff_delays_are_full_jitter_capped_at_sixty_seconds() -> None:
    backoff = Backoff(rng=np.random.default_rng(1))
    draws: dict[int, list[float]] = {0: [], 3: [], 200: []}
    for failures, samples in draws.items():
        for _ in range(2000):
            backoff.failures = failures
            samples.append(backoff.next_delay())
    for failures, samples in draws.items():
        ceiling = min(60.0, 0.5 * 2**failures)
        arr = np.asarray(samples)
        assert arr.min() >= 0 and arr.max() < ceiling
        # uniform on [0, ceiling): spread over the whole range, mean at half
        assert arr.min() < 0.02 * ceiling and arr.max() > 0.98 * ceiling
        assert abs(arr.mean() - ceiling / 2) < 0.03 * ceiling
    assert np.mean(draws[3]) > 3 * np.mean(draws[0])  # grows with failures
    assert max(draws[200]) <= 60.0


def test_backoff_is_reproducible_from_its_seed_and_checks_arguments() -> None:
    a, b = Backoff(rng=5), Backoff(rng=5)
    assert [a.next_delay() for _ in range(8)] == [b.next_delay() for _ in range(8)]
    assert Backoff(rng=5).next_delay() != Backoff(rng=6).next_delay()
    with pytest.raises(InvalidInputError, match="base_s"):
        Backoff(0.0)
    with pytest.raises(InvalidInputError, match="cap_s"):
        Backoff(2.0, 1.0)
    with pytest.raises(InvalidInputError, match="cap_s"):
        Backoff(0.5, float("inf"))
    with pytest.raises(InvalidInputError, match="rng"):
        Backoff(rng="seed")


# -- BandwidthCap --------------------------------------------------------------------------


def test_bandwidth_cap_waits_exactly_the_deficit(fake_time: FakeTime) -> None:
    cap = BandwidthCap(1000, clock=fake_time.clock, sleep=fake_time.sleep)
    assert cap.burst_bytes == 1000
    assert cap.acquire(1000) == 0  # starts full
    assert cap.delay(500) == pytest.approx(0.5)
    assert cap.delay(500) == pytest.approx(0.5)  # delay changes nothing
    assert cap.acquire(500) == pytest.approx(0.5)
    assert fake_time.now == pytest.approx(0.5)
    fake_time.now += 10  # idle: the bucket fills up to its size, not more
    assert cap.acquire(1000) == 0
    assert cap.acquire(1000) == pytest.approx(1.0)


def test_a_body_larger_than_the_bucket_waits_for_a_full_bucket_then_goes_into_debt(
    fake_time: FakeTime,
) -> None:
    cap = BandwidthCap(1000, burst_bytes=2000, clock=fake_time.clock, sleep=fake_time.sleep)
    cap.acquire(2000)  # empty now
    assert cap.acquire(10_000) == pytest.approx(2.0)  # a full bucket, not 10 s
    assert cap.delay(1) == pytest.approx(8.001)  # the debt of 8000 bytes, then one byte


def test_unlimited_bandwidth_never_sleeps() -> None:
    def no_sleep(seconds: float) -> None:
        raise AssertionError("slept")

    cap = BandwidthCap(None, sleep=no_sleep)
    assert cap.delay(10**12) == 0 and cap.acquire(10**12) == 0
    with pytest.raises(InvalidInputError, match="n must be"):
        cap.delay(-1)
    for bad in (0, -5, float("nan"), float("inf"), True):
        with pytest.raises(InvalidInputError, match="bytes_per_s"):
            BandwidthCap(bad)


@given(
    sizes=st.lists(st.integers(0, 5000), min_size=1, max_size=30),
    rate=st.sampled_from([100.0, 1000.0, 4096.0]),
    burst=st.sampled_from([1, 1000, 3000]),
)
@settings(max_examples=60)
def test_back_to_back_sends_start_no_later_than_the_rate_allows(
    sizes: list[int], rate: float, burst: int
) -> None:
    # Sent back to back, the bucket never overflows, so the k-th body starts exactly when the
    # bytes before it plus min(its size, burst) have been earned beyond the initial burst.
    t = FakeTime()
    cap = BandwidthCap(rate, burst_bytes=burst, clock=t.clock, sleep=t.sleep)
    sent = 0
    for n in sizes:
        cap.acquire(n)
        expected = max(0.0, (sent + min(n, burst) - burst) / rate)
        assert t.now == pytest.approx(expected, abs=1e-6)
        sent += n


# -- Uploader: answers -----------------------------------------------------------------------


def test_all_accepted_frames_are_acked_most_valuable_first(
    buffer: FrameBuffer, server: FakeServer, make_uploader: Callable[..., Uploader]
) -> None:
    fill(buffer, 10)
    uploader = make_uploader(batch_frames=4)
    out = uploader.upload_once()
    assert (out.sent, out.acked, out.accepted, out.released, out.error) == (4, 4, 4, 0, None)
    assert out.http_status == 200 and out.wait_s == 0
    assert [f.device_seq for f in server.batches[0].frames] == [10, 9, 8, 7]
    request = server.requests[0]
    assert request.method == "POST" and str(request.url) == f"{SERVER}/v1/batches"
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Content-Type"] == MEDIA_TYPE
    assert server.batches[0].device_id == DEVICE
    assert drain(uploader) == 3
    assert buffer.stats().frames == 0 and buffer.stats().uploaded == 10
    counters = uploader.counters
    assert (counters.uploaded, counters.accepted, counters.batches_sent) == (10, 10, 3)
    assert counters.bytes_sent == sum(len(b) for b in server.bodies)
    empty = uploader.upload_once()
    assert (empty.sent, empty.error, empty.batch_id, empty.wait_s) == (0, None, None, 1.0)


def test_only_answered_frames_are_acked_the_rest_released(
    buffer: FrameBuffer, server: FakeServer, make_uploader: Callable[..., Uploader]
) -> None:
    fill(buffer, 6)
    server.answer = lambda b: result(
        b, lambda s: "accepted" if s % 2 else "duplicate" if s == 4 else None
    )
    uploader = make_uploader()
    out = uploader.upload_once()
    assert (out.sent, out.acked, out.accepted, out.duplicates, out.released) == (6, 4, 3, 1, 2)
    assert out.error is None
    left = buffer.claim(10)
    assert sorted(f.device_seq for f in left) == [2, 6]  # unanswered, back in the pool
    assert uploader.counters.unanswered == 2 and uploader.counters.released == 2
    assert buffer.stats().uploaded == 4


def test_rejected_frames_are_dropped_with_their_reason_counted(
    buffer: FrameBuffer, server: FakeServer, make_uploader: Callable[..., Uploader]
) -> None:
    fill(buffer, 5)
    reasons = {
        2: "embedding_zero_norm: norm 0",
        3: "image_corrupt: truncated",
        5: "image_corrupt: x",
    }
    server.answer = lambda b: result(b, lambda s: reasons.get(s, "accepted"))
    uploader = make_uploader()
    out = uploader.upload_once()
    assert out.rejected == {"embedding_zero_norm": 1, "image_corrupt": 2}
    assert (out.acked, out.released) == (2, 0)
    stats = buffer.stats()
    assert stats.frames == 0 and stats.uploaded == 2
    assert stats.dropped == {"embedding_zero_norm": 1, "image_corrupt": 2}
    assert uploader.counters.rejected == {"embedding_zero_norm": 1, "image_corrupt": 2}
    flat = uploader.counters.flat()
    assert flat["sync.rejected.image_corrupt"] == 2 and flat["sync.uploaded"] == 2


@pytest.mark.parametrize(
    "failure",
    [
        lambda b: error(503, "unavailable", "catalog locked"),
        lambda b: error(500),
        lambda b: error(429),
        lambda b: error(415, "unsupported_media_type", "bad type"),
        "connect",
        "timeout",
    ],
    ids=["503", "500", "429", "415", "connect", "timeout"],
)
def test_errors_release_every_frame_and_back_off_then_the_retry_succeeds(
    buffer: FrameBuffer,
    server: FakeServer,
    make_uploader: Callable[..., Uploader],
    failure: object,
) -> None:
    fill(buffer, 5)
    calls = 0

    def answer(batch: BatchUpload) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls > 3:
            return accept_all(batch)
        if failure == "connect":
            raise httpx.ConnectError("[Errno 111] Connection refused")
        if failure == "timeout":
            raise httpx.ReadTimeout("timed out")
        assert callable(failure)
        response: httpx.Response = failure(batch)
        return response

    server.answer = answer
    uploader = make_uploader(rng=11)
    reference = Backoff(0.5, 60.0, rng=11)
    for _ in range(3):
        out = uploader.upload_once()
        assert out.sent == 5 and out.released == 5 and out.acked == 0
        assert out.error is not None and "\n" not in out.error
        assert out.wait_s == reference.next_delay()  # full jitter, ceilings 0.5, 1, 2
        stats = buffer.stats()
        assert stats.frames == 5 and stats.claimed == 0 and stats.uploaded == 0
    assert uploader.last_error == out.error
    done = uploader.upload_once()
    assert (done.acked, done.error, done.wait_s) == (5, None, 0)
    counters = uploader.counters
    kind = {"connect": "transport_errors", "timeout": "transport_errors"}.get(str(failure))
    if kind is None:
        kind = "client_errors" if "415" in (out.error or "") else "server_errors"
    assert getattr(counters, kind) == 3 and counters.released == 15
    # success reset the backoff: the next error draws from [0, 0.5) again
    fill(buffer, 1)
    server.answer = lambda b: error(502)
    reference.reset()
    assert uploader.upload_once().wait_s == reference.next_delay()


def test_retry_after_of_a_503_is_honoured(
    buffer: FrameBuffer, server: FakeServer, make_uploader: Callable[..., Uploader]
) -> None:
    fill(buffer, 2)
    server.answer = lambda b: error(503, **{"Retry-After": "7"})
    uploader = make_uploader(max_backoff_s=5)
    assert uploader.upload_once().wait_s == 5  # capped by max_backoff_s
    server.answer = lambda b: error(429, **{"Retry-After": "3"})
    assert uploader.upload_once().wait_s == 3


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_token_raises_sync_auth_error_and_releases_the_frames(
    buffer: FrameBuffer,
    server: FakeServer,
    make_uploader: Callable[..., Uploader],
    status: int,
) -> None:
    fill(buffer, 3)
    server.answer = lambda b: error(status, "unauthorized", "unknown or revoked token")
    uploader = make_uploader()
    with pytest.raises(SyncAuthError) as caught:
        uploader.upload_once()
    message = str(caught.value)
    assert f"HTTP {status}" in message and "unknown or revoked token" in message
    assert SERVER in message and TOKEN not in message and "\n" not in message
    assert buffer.stats().frames == 3 and buffer.stats().claimed == 0
    counters = uploader.counters
    assert (counters.auth_errors, counters.released, counters.batches_sent) == (1, 3, 1)


def test_413_halves_the_batch_until_it_fits(
    buffer: FrameBuffer, server: FakeServer, make_uploader: Callable[..., Uploader]
) -> None:
    fill(buffer, 20)
    server.answer = lambda b: (
        error(413, "payload_too_large") if len(b.frames) > 5 else accept_all(b)
    )
    uploader = make_uploader(batch_frames=16)
    first = uploader.upload_once()
    assert first.http_status == 413 and first.released == 16 and first.wait_s == 0
    assert first.rejected == {}
    drain(uploader)
    assert server.sizes() == [16, 8, 4, 4, 4, 4, 4]
    assert buffer.stats().uploaded == 20 and buffer.stats().dropped == {}


def test_a_frame_too_large_alone_is_dropped_and_the_batch_size_restored(
    buffer: FrameBuffer, server: FakeServer, make_uploader: Callable[..., Uploader]
) -> None:
    fill(buffer, 9)
    big = buffer.add(kept_frame(0.5, size=50_000, seed=99)).device_seq  # worth most: first
    server.answer = lambda b: (
        error(413) if any(len(f.image) > 10_000 for f in b.frames) else accept_all(b)
    )
    uploader = make_uploader(batch_frames=8)
    drain(uploader)
    assert server.sizes()[:4] == [8, 4, 2, 1]  # the big frame comes first every time
    assert server.batches[3].frames[0].device_seq == big
    assert server.sizes()[4:] == [8, 1]  # restored after the drop
    stats = buffer.stats()
    assert stats.dropped == {"payload_too_large": 1} and stats.uploaded == 9
    assert uploader.counters.rejected == {"payload_too_large": 1}


def bisect_run(
    tmp: Path, n: int, bad: set[int], batch_frames: int
) -> tuple[FrameBuffer, FakeServer]:
    server = FakeServer()

    def answer(batch: BatchUpload) -> httpx.Response:
        if {f.device_seq for f in batch.frames} & bad:
            return error(400, "wire_format_error", "invalid batch header")
        return accept_all(batch)

    server.answer = answer
    buf = FrameBuffer(tmp / "buffer.db", max_bytes=16 * 2**20)
    fill(buf, n)
    client = httpx.Client(transport=httpx.MockTransport(server.handle))
    with Uploader(
        buf, server=SERVER, token=TOKEN, device_id=DEVICE, batch_frames=batch_frames, client=client
    ) as up:
        drain(up, most=400)
    client.close()
    return buf, server


def test_a_400_batch_is_bisected_down_to_the_bad_frame(tmp_path: Path) -> None:
    buf, server = bisect_run(tmp_path, 20, {13}, 16)
    with buf:
        stats = buf.stats()
        assert stats.dropped == {"bad_request": 1} and stats.uploaded == 19 and stats.frames == 0
    # claims go 20, 19, ...: 20..5 (400) -> 20..13 (400) -> 20..17 (ok) -> 16..13 (400)
    # -> 16, 15 (ok) -> 14, 13 (400) -> 14 (ok) -> 13 alone (400: dropped) -> the rest, 16 again
    assert server.sizes() == [16, 8, 4, 4, 2, 2, 1, 1, 12]
    assert [f.device_seq for f in server.batches[7].frames] == [13]


@given(
    n=st.integers(1, 24),
    bad=st.sets(st.integers(1, 24), max_size=4),
    batch=st.sampled_from([1, 3, 8, 32]),
)
@settings(max_examples=25)
def test_bisection_drops_exactly_the_bad_frames(n: int, bad: set[int], batch: int) -> None:
    bad = {s for s in bad if s <= n}
    with tempfile.TemporaryDirectory() as tmp:
        buf, server = bisect_run(Path(tmp), n, bad, batch)
        with buf:
            stats = buf.stats()
            assert stats.frames == 0 and stats.uploaded == n - len(bad)
            assert stats.dropped == ({"bad_request": len(bad)} if bad else {})
        accepted = {f.device_seq for b in server.batches for f in b.frames}
        assert accepted == set(range(1, n + 1))


@pytest.mark.parametrize(
    "answer",
    [
        lambda b: httpx.Response(200, content=b"<html>proxy</html>"),
        lambda b: httpx.Response(200, json={"batch_id": b.batch_id}),
        lambda b: result(
            BatchUpload(batch_id="other", device_id=DEVICE, frames=b.frames), lambda s: "accepted"
        ),
        lambda b: httpx.Response(
            200,
            content=BatchResult(
                batch_id=b.batch_id,
                results=(
                    FrameResult(frame_id=b.frames[0].frame_id, device_seq=999, status="accepted"),
                ),
            ).model_dump_json(),
        ),
        lambda b: httpx.Response(
            200,
            content=BatchResult(
                batch_id=b.batch_id,
                results=(
                    FrameResult(
                        frame_id="f" * 64, device_seq=b.frames[0].device_seq, status="accepted"
                    ),
                ),
            ).model_dump_json(),
        ),
        lambda b: httpx.Response(
            200,
            content=BatchResult(
                batch_id=b.batch_id,
                results=tuple(
                    FrameResult(
                        frame_id=b.frames[0].frame_id,
                        device_seq=b.frames[0].device_seq,
                        status="accepted",
                    )
                    for _ in range(2)
                ),
            ).model_dump_json(),
        ),
    ],
    ids=["not-json", "not-a-result", "other-batch", "unsent-seq", "other-frame-id", "twice"],
)
def test_a_malformed_answer_releases_everything_and_backs_off(
    buffer: FrameBuffer,
    server: FakeServer,
    make_uploader: Callable[..., Uploader],
    answer: Answer,
) -> None:
    fill(buffer, 4)
    server.answer = answer
    uploader = make_uploader()
    out = uploader.upload_once()
    assert out.http_status == 200 and out.error is not None and out.error.startswith("bad answer")
    assert (out.acked, out.released, out.rejected) == (0, 4, {})
    assert 0 <= out.wait_s < 0.5
    stats = buffer.stats()
    assert stats.frames == 4 and stats.claimed == 0 and stats.uploaded == 0 and stats.dropped == {}
    assert uploader.counters.protocol_errors == 1


def test_a_retry_of_the_same_frames_is_the_same_batch(
    buffer: FrameBuffer, server: FakeServer, make_uploader: Callable[..., Uploader]
) -> None:
    fill(buffer, 6)
    answers = iter([error(502), error(504)])
    server.answer = lambda b: next(answers, None) or accept_all(b)
    uploader = make_uploader()
    outs = [uploader.upload_once() for _ in range(3)]
    assert [o.http_status for o in outs] == [502, 504, 200]
    assert len({o.batch_id for o in outs}) == 1 and len(set(server.bodies)) == 1
    assert outs[0].batch_id == batch_id_for(DEVICE, range(1, 7))
    assert batch_id_for(DEVICE, [3, 1, 2]) == batch_id_for(DEVICE, [1, 2, 3])
    assert batch_id_for(DEVICE, [1, 2, 3]) != batch_id_for(DEVICE, [1, 2, 4])
    assert batch_id_for(DEVICE, [1, 2]) != batch_id_for("cam-2", [1, 2])


def test_the_bandwidth_cap_paces_the_bodies(
    buffer: FrameBuffer,
    server: FakeServer,
    fake_time: FakeTime,
    make_uploader: Callable[..., Uploader],
) -> None:
    fill(buffer, 12)
    uploader = make_uploader(batch_frames=3, bandwidth_bytes_per_s=2000)
    drain(uploader)
    sizes = [len(b) for b in server.bodies]
    assert len(sizes) == 4 and all(s > 2000 for s in sizes)  # each body over the 1 s burst
    # each body waits for a full bucket and leaves a debt: body k starts at sum(sizes[:k]) / rate
    assert fake_time.now == pytest.approx(sum(sizes[:-1]) / 2000)


# -- Uploader: run, heartbeats, settings ---------------------------------------------------


def heartbeat_of(buf: FrameBuffer, uploader_ref: list[Uploader]) -> Callable[[], DeviceHeartbeat]:
    started = datetime.now(UTC)

    def make() -> DeviceHeartbeat:
        stats = buf.stats()
        return DeviceHeartbeat(
            device_id=DEVICE,
            sent_at=datetime.now(UTC),
            started_at=started,
            software_version="0.1.0",
            counters=uploader_ref[0].counters.flat() if uploader_ref else {},
            buffer_frames=stats.frames,
            buffer_bytes=stats.file_bytes,
            buffer_max_bytes=stats.max_bytes,
            last_device_seq=stats.last_device_seq,
        )

    return make


def test_run_retries_through_errors_polls_when_empty_and_sends_heartbeats(
    buffer: FrameBuffer,
    server: FakeServer,
    fake_time: FakeTime,
    make_uploader: Callable[..., Uploader],
) -> None:
    fill(buffer, 10)
    failures = iter([httpx.ConnectError("refused"), httpx.ConnectError("refused")])

    def answer(batch: BatchUpload) -> httpx.Response:
        exc = next(failures, None)
        if exc is not None:
            raise exc
        return accept_all(batch)

    server.answer = answer
    stop = threading.Event()
    ref: list[Uploader] = []

    def sleep(seconds: float) -> None:
        fake_time.sleep(seconds)
        if fake_time.now > 130:
            stop.set()

    uploader = make_uploader(
        batch_frames=4,
        sleep=sleep,
        heartbeat=heartbeat_of(buffer, ref),
        heartbeat_interval_s=60,
        rng=3,
    )
    ref.append(uploader)
    uploader.run(stop)
    assert buffer.stats().uploaded == 10
    reference = Backoff(rng=3)
    backoffs = [reference.next_delay(), reference.next_delay()]
    assert fake_time.sleeps[:2] == backoffs  # two transport errors, then three batches at once
    # then polling the empty buffer every second (a wait ends early when a heartbeat is due)
    assert all(0 < s <= 1.0 + 1e-9 for s in fake_time.sleeps[2:])
    assert len(fake_time.sleeps) >= 120
    assert [b.counters.get("sync.uploaded", 0) for b in server.heartbeats] == [0, 10, 10]
    beat_times = [r for r in server.requests if r.url.path == "/v1/heartbeats"]
    assert all(r.headers["Authorization"] == f"Bearer {TOKEN}" for r in beat_times)
    assert all(r.headers["Content-Type"] == "application/json" for r in beat_times)
    assert uploader.counters.heartbeats_sent == 3 and uploader.counters.transport_errors == 2


def test_heartbeat_failures_are_counted_never_fatal_but_a_refused_token_is(
    buffer: FrameBuffer, server: FakeServer, make_uploader: Callable[..., Uploader]
) -> None:
    ref: list[Uploader] = []
    uploader = make_uploader(heartbeat=heartbeat_of(buffer, ref))
    ref.append(uploader)
    server.beat = lambda b: error(500)
    assert uploader.send_heartbeat() is False
    server.beat = lambda b: httpx.Response(200, json={"ok": True})
    assert uploader.send_heartbeat() is False

    def unreachable(beat: DeviceHeartbeat) -> httpx.Response:
        raise httpx.ConnectError("refused")

    server.beat = unreachable
    assert uploader.send_heartbeat() is False
    assert uploader.counters.heartbeat_errors == 3 and uploader.counters.heartbeats_sent == 0
    assert uploader.last_error is not None and "heartbeat" in uploader.last_error
    server.beat = ack_heartbeat
    assert uploader.send_heartbeat() is True
    server.beat = lambda b: error(401, "unauthorized", "revoked")
    with pytest.raises(SyncAuthError, match="HTTP 401 on /v1/heartbeats: unauthorized: revoked"):
        uploader.run(threading.Event())
    assert make_uploader().send_heartbeat() is False  # no heartbeat callable: nothing sent


def test_a_broken_heartbeat_callable_does_not_stop_uploads(
    buffer: FrameBuffer, make_uploader: Callable[..., Uploader]
) -> None:
    def broken() -> DeviceHeartbeat:
        raise RuntimeError("stats unavailable")

    uploader = make_uploader(heartbeat=broken)
    assert uploader.send_heartbeat() is False
    assert uploader.counters.heartbeat_errors == 1
    assert "RuntimeError: stats unavailable" in (uploader.last_error or "")


def test_run_logs_and_backs_off_from_unexpected_errors(
    buffer: FrameBuffer,
    server: FakeServer,
    fake_time: FakeTime,
    make_uploader: Callable[..., Uploader],
) -> None:
    fill(buffer, 2)
    calls = 0

    def answer(batch: BatchUpload) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("bug in a proxy library")
        return accept_all(batch)

    server.answer = answer
    stop = threading.Event()

    def sleep(seconds: float) -> None:
        fake_time.sleep(seconds)
        if buffer.stats().frames == 0:
            stop.set()

    uploader = make_uploader(sleep=sleep, rng=2)
    uploader.run(stop)
    assert uploader.counters.internal_errors == 1 and buffer.stats().uploaded == 2
    assert fake_time.sleeps[0] == Backoff(rng=2).next_delay()
    assert buffer.stats().claimed == 0


def test_stop_interrupts_a_long_wait_with_the_default_sleep(
    buffer: FrameBuffer, server: FakeServer
) -> None:
    client = httpx.Client(transport=httpx.MockTransport(server.handle))
    uploader = Uploader(
        buffer, server=SERVER, token=TOKEN, device_id=DEVICE, poll_interval_s=300, client=client
    )
    stop = threading.Event()
    thread = threading.Thread(target=uploader.run, args=(stop,))
    thread.start()
    time.sleep(0.2)  # now waiting out the 300 s poll interval
    started = time.monotonic()
    stop.set()
    thread.join(timeout=5)
    assert not thread.is_alive() and time.monotonic() - started < 2
    client.close()


def test_arguments_are_checked(buffer: FrameBuffer) -> None:
    ok = {"server": SERVER, "token": TOKEN, "device_id": DEVICE}
    bad: list[tuple[dict[str, object], str]] = [
        ({"server": "curator.test"}, "server"),
        ({"server": "ftp://x"}, "server"),
        ({"token": ""}, "token"),
        ({"token": "two words"}, "token"),
        ({"token": "x\r\nX-Evil: 1"}, "token"),
        ({"device_id": "cam 1"}, "device_id"),
        ({"batch_frames": 0}, "batch_frames"),
        ({"batch_frames": 5000}, "batch_frames"),
        ({"batch_bytes": 1.5}, "batch_bytes"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"max_backoff_s": float("inf")}, "max_backoff_s"),
        ({"poll_interval_s": -1}, "poll_interval_s"),
        ({"heartbeat_interval_s": True}, "heartbeat_interval_s"),
        ({"bandwidth_bytes_per_s": 0}, "bytes_per_s"),
    ]
    for change, name in bad:
        with pytest.raises(InvalidInputError, match=name) as caught:
            Uploader(buffer, **{**ok, **change})  # type: ignore[arg-type]
        assert TOKEN not in str(caught.value)


def test_close_closes_only_the_client_the_uploader_made(
    buffer: FrameBuffer, server: FakeServer
) -> None:
    given_client = httpx.Client(transport=httpx.MockTransport(server.handle))
    with Uploader(buffer, server=SERVER, token=TOKEN, device_id=DEVICE, client=given_client):
        pass
    assert not given_client.is_closed
    given_client.close()
    own = Uploader(buffer, server=SERVER + "/", token=TOKEN, device_id=DEVICE)
    assert own.server == SERVER
    own.close()
    assert own._link._client.is_closed


def test_counters_flatten_to_heartbeat_counter_names(
    buffer: FrameBuffer, server: FakeServer, make_uploader: Callable[..., Uploader]
) -> None:
    fill(buffer, 2)
    server.answer = lambda b: result(b, lambda s: "odd-code.x: detail" if s == 1 else "accepted")
    uploader = make_uploader()
    uploader.upload_once()
    flat = uploader.counters.flat()
    assert flat["sync.rejected.odd_code.x"] == 1 and flat["sync.accepted"] == 1
    import re

    assert all(re.fullmatch(COUNTER_PATTERN.strip("^$"), name) for name in flat)
    beat = heartbeat_of(buffer, [uploader])()
    assert json.loads(beat.model_dump_json())["counters"] == flat


def test_a_server_refusing_every_frame_cannot_empty_the_buffer(tmp_path: Path) -> None:
    """After MAX_LONE_REFUSALS frames refused alone in a row, nothing more is dropped."""
    from edge_selector.sync import MAX_LONE_REFUSALS

    server = FakeServer()
    server.answer = lambda batch: error(400, "wire_format_error", "unsupported schema version 9")
    buf = FrameBuffer(tmp_path / "buffer.db", max_bytes=16 * 2**20)
    fill(buf, 30)
    client = httpx.Client(transport=httpx.MockTransport(server.handle))
    with Uploader(buf, server=SERVER, token=TOKEN, device_id=DEVICE, batch_frames=8,
                  client=client) as up:  # fmt: skip
        outcomes = [up.upload_once() for _ in range(60)]
    client.close()
    with buf:
        stats = buf.stats()
        assert stats.dropped == {"bad_request": MAX_LONE_REFUSALS}
        assert stats.frames == 30 - MAX_LONE_REFUSALS and stats.claimed == 0
    assert "refuses every frame" in (outcomes[-1].error or "")
