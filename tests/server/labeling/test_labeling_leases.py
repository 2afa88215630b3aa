"""Leases against a real catalog file: no frame is handed to two labelers while leased (threads
with their own connections), expiry by a fake clock, renew, release, who may do what."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest

from curator.errors import InvalidInputError
from server.catalog import Catalog
from server.errors import Forbidden, NotFound
from server.ingest import IngestService
from server.labeling import LabelStore, LeaseConflict


def test_a_lease_hands_out_distinct_frames_with_their_task(
    store: LabelStore, frames: list[str], clock: Any
) -> None:
    tasks = store.lease("alice", count=5, lease_s=60)
    assert len(tasks) == 5 and len({t.frame_id for t in tasks}) == 5
    assert set(t.frame_id for t in tasks) <= set(frames)
    t = tasks[0]
    assert t.lease.holder == "alice" and t.lease.expires_at == clock.now + timedelta(seconds=60)
    assert t.class_names == ("0", "1", "2")  # no registered names: indexes of the probabilities
    assert t.predicted_index == 0 and t.predicted_class == "0"
    assert 0.4 <= t.confidence <= 0.41
    assert t.lease.strategy == "uncertainty_diversity" and t.lease.model_version == "m1"
    assert t.image_path == f"/v1/frames/{t.frame_id}/image"


def test_leased_frames_are_not_handed_out_again_until_the_pool_is_empty(
    store: LabelStore, frames: list[str]
) -> None:
    seen = [t.frame_id for _ in range(4) for t in store.lease("alice", count=6)]
    assert sorted(seen) == sorted(frames)  # 20 frames over 6+6+6+2
    assert store.lease("bob", count=10) == []


def test_two_labelers_leasing_concurrently_never_share_a_frame(
    service: IngestService, frames: list[str], clock: Any
) -> None:
    """Each thread opens its own catalog (own SQLiteFile, own connections) on the same file."""
    path = service.catalog.db.path
    got: dict[str, list[str]] = {"alice": [], "bob": []}
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def labeler(name: str) -> None:
        try:
            with Catalog(path) as catalog:
                store = LabelStore(catalog, clock=clock, rng=hash(name) % 1000)
                for _ in range(12):
                    barrier.wait(timeout=10)
                    got[name] += [t.frame_id for t in store.lease(name, count=1, lease_s=60)]
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=labeler, args=(n,)) for n in got]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert set(got["alice"]).isdisjoint(got["bob"])
    assert len(got["alice"]) == len(set(got["alice"]))
    assert sorted(got["alice"] + got["bob"]) == sorted(frames)  # 24 tries, 20 frames: all out


def test_many_rounds_of_concurrent_batches_stay_disjoint(
    service: IngestService, frames: list[str], clock: Any
) -> None:
    """Rounds of 3 labelers leasing batches at once; leases expire between rounds."""
    path = service.catalog.db.path
    for round_ in range(8):
        got: dict[int, list[str]] = {}
        barrier = threading.Barrier(3)

        def labeler(i: int, seed: int, barrier: threading.Barrier, got: dict[int, Any]) -> None:
            with Catalog(path) as catalog:
                store = LabelStore(catalog, clock=clock, rng=seed)
                barrier.wait(timeout=10)
                got[i] = [t.frame_id for t in store.lease(f"l{i}", count=8, lease_s=30)]

        threads = [
            threading.Thread(target=labeler, args=(i, round_ * 10 + i, barrier, got))
            for i in range(3)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        batches = [got[i] for i in range(3)]
        flat = [f for b in batches for f in b]
        assert len(flat) == len(set(flat)) == 20, (round_, [len(b) for b in batches])
        clock.advance(31)


def test_an_expired_lease_returns_the_frame_to_the_pool(
    store: LabelStore, frames: list[str], clock: Any
) -> None:
    held = {t.frame_id for t in store.lease("alice", count=20, lease_s=60)}
    assert held == set(frames)
    clock.advance(59)
    assert store.lease("bob", count=5) == []
    clock.advance(1)  # now == expires_at: expired
    back = store.lease("bob", count=20)
    assert {t.frame_id for t in back} == set(frames)
    old = store.get_lease(next(iter(store_leases(store, "alice"))))
    assert old.release_reason == "expired" and old.released_at == old.expires_at


def store_leases(store: LabelStore, holder: str) -> list[str]:
    rows = store.catalog.db.connection.execute(
        "SELECT lease_id FROM label_leases WHERE holder = ?", (holder,)
    )
    return [r[0] for r in rows]


def test_renew_extends_and_keeps_the_frame(
    store: LabelStore, frames: list[str], clock: Any
) -> None:
    (task,) = store.lease("alice", count=1, lease_s=60)
    clock.advance(50)
    renewed = store.renew(task.lease.lease_id, "alice", lease_s=120)
    assert renewed.expires_at == clock.now + timedelta(seconds=120)
    clock.advance(100)  # past the first expiry, within the renewed one
    assert task.frame_id not in {t.frame_id for t in store.lease("bob", count=20)}
    clock.advance(21)
    with pytest.raises(LeaseConflict, match="no longer open"):
        store.renew(task.lease.lease_id, "alice")


def test_release_gives_the_frame_back_and_only_the_holder_or_an_admin_may(
    store: LabelStore, frames: list[str]
) -> None:
    a, b = store.lease("alice", count=2)
    with pytest.raises(Forbidden, match="held by another"):
        store.release(a.lease.lease_id, "bob")
    with pytest.raises(Forbidden):
        store.renew(a.lease.lease_id, "bob")
    released = store.release(a.lease.lease_id, "alice")
    assert released.release_reason == "released" and released.released_at is not None
    assert store.release(b.lease.lease_id, "root", admin=True).release_reason == "released"
    with pytest.raises(LeaseConflict, match="released"):
        store.release(a.lease.lease_id, "alice")
    again = {t.frame_id for t in store.lease("bob", count=20)}
    assert {a.frame_id, b.frame_id} <= again and len(again) == 20
    with pytest.raises(NotFound):
        store.renew("lease_nope", "alice")


@pytest.mark.parametrize(
    ("count", "lease_s"), [(0, 60), (101, 60), (True, 60), (1.5, 60), (5, 0), (5, -1), (5, 1e9)]
)
def test_bad_lease_arguments_are_refused(
    store: LabelStore, frames: list[str], count: object, lease_s: object
) -> None:
    with pytest.raises(InvalidInputError):
        store.lease("alice", count=count, lease_s=lease_s)  # type: ignore[arg-type]


def test_an_unknown_strategy_lists_the_valid_ones(service: IngestService) -> None:
    with pytest.raises(ValueError, match=r"valid: .*uncertainty_diversity"):
        LabelStore(service.catalog, strategy="nope")


def test_the_database_refuses_two_open_leases_on_one_frame(
    store: LabelStore, frames: list[str]
) -> None:
    import sqlite3

    (task,) = store.lease("alice", count=1)
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
        store.catalog.db.connection.execute(
            "INSERT INTO label_leases (lease_id, frame_id, holder, leased_at, expires_at,"
            " strategy) VALUES ('x', ?, 'bob', 'a', 'b', 'random')",
            (task.frame_id,),
        )
