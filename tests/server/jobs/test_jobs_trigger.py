"""Snapshots and the trigger policy, on a real catalog with real labels."""

from __future__ import annotations

import hashlib

import pytest
from testkit.jobs import add_labels

from curator.errors import InvalidInputError
from server.catalog import Catalog
from server.jobs import (
    JobQueue,
    JobStore,
    SnapshotLabel,
    current_watermark,
    decide,
    snapshot_key,
    snapshot_labels,
    trigger,
)


def test_snapshot_key_is_sha256_of_sorted_pairs() -> None:
    pairs = [("f2", "l2"), ("f1", "l1")]
    expected = hashlib.sha256(b"f1\tl1\nf2\tl2\n").hexdigest()
    assert snapshot_key(pairs) == expected
    assert snapshot_key(reversed(pairs)) == expected
    assert snapshot_key([SnapshotLabel("f1", "l1", "cat"), SnapshotLabel("f2", "l2", "dog")]) == (
        expected
    )
    assert snapshot_key([("f1", "l1"), ("f2", "l3")]) != expected  # a correction
    assert snapshot_key([]) == hashlib.sha256().hexdigest()
    for bad in ([("f1",)], [("f1", "")], [("f\t1", "l1")], ["f1"]):
        with pytest.raises(InvalidInputError, match="frame_id, label_id"):
            snapshot_key(bad)  # type: ignore[arg-type]


def test_snapshot_labels_are_pinned_by_the_watermark(catalog: Catalog) -> None:
    conn = catalog.db.connection
    add_labels(conn, 3)
    watermark = current_watermark(conn)
    before = snapshot_labels(conn, watermark)
    assert [x.label_id for x in sorted(before, key=lambda x: x.label_id)] == [
        "lbl-0", "lbl-1", "lbl-2",
    ]  # fmt: skip
    # a correction and a new frame later leave the old snapshot as it was
    frame0 = next(x.frame_id for x in before if x.label_id == "lbl-0")
    conn.execute(
        "INSERT INTO labels (label_id, frame_id, class_name, labeler, created_at, supersedes)"
        " VALUES ('fix-0', ?, 'class_3', 'rev', 't', 'lbl-0')",
        (frame0,),
    )
    add_labels(conn, 1, start=3)
    assert snapshot_labels(conn, watermark) == before
    now = snapshot_labels(conn, current_watermark(conn))
    assert {x.label_id for x in now} == {"fix-0", "lbl-1", "lbl-2", "lbl-3"}
    assert snapshot_key(now) != snapshot_key(before)
    with pytest.raises(InvalidInputError, match="watermark"):
        snapshot_labels(conn, -1)


@pytest.mark.parametrize(
    ("new", "every", "requested", "size", "start"),
    [
        (0, 100, False, 0, False),
        (5, 1, True, 0, False),  # nothing to train on, even when asked
        (99, 100, False, 99, False),
        (100, 100, False, 100, True),
        (150, 100, False, 150, True),
        (0, 100, True, 10, True),
    ],
)
def test_decide(new: int, every: int, requested: bool, size: int, start: bool) -> None:
    decision = decide(new, every, requested=requested, snapshot_size=size)
    assert decision.start is start and decision.reason


def test_decide_refuses_bad_counts() -> None:
    with pytest.raises(InvalidInputError, match="every_labels"):
        decide(1, 0)
    with pytest.raises(InvalidInputError, match="new_labels"):
        decide(-1, 5)


def test_trigger_every_n_labels_and_on_request(
    catalog: Catalog, store: JobStore, queue: JobQueue
) -> None:
    conn = catalog.db.connection
    assert trigger(store, queue, every_labels=3).job is None  # no labels at all
    add_labels(conn, 2)
    outcome = trigger(store, queue, every_labels=3)
    assert outcome.job is None and "2 new labels of 3" in outcome.decision.reason
    add_labels(conn, 1, start=2)
    outcome = trigger(store, queue, every_labels=3)
    job = outcome.job
    assert outcome.created and job is not None and job.label_count == 3
    assert job.snapshot_key == snapshot_key(snapshot_labels(conn, current_watermark(conn)))
    assert queue.pending() == 1 and store.get(job.job_id).dispatched_at is not None
    assert trigger(store, queue, every_labels=3).job is None  # 0 new since that snapshot
    # an admin asking again for the same snapshot gets the same job, nothing dispatched
    asked = trigger(store, queue, every_labels=3, requested_by="admin")
    assert asked.job is not None and asked.job.job_id == job.job_id and not asked.created
    assert queue.pending() == 1
    add_labels(conn, 1, start=3)
    asked = trigger(store, queue, every_labels=3, requested_by="admin", params={"pretrain": True})
    assert asked.created and asked.job is not None and asked.job.label_count == 4
    assert asked.job.requested_by == "admin" and asked.job.params == {"pretrain": True}
    assert queue.pending() == 2
    add_labels(conn, 2, start=4)  # counted since the admin's job: 2 < 3
    assert trigger(store, queue, every_labels=3).job is None
