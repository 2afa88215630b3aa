"""The skip cool-down against a real catalog file and a fake clock: a frame a labeler gave back
is not handed to that labeler again until the cool-down has passed; colleagues get it at once;
an expired lease is no skip."""

from __future__ import annotations

from typing import Any

import pytest

from curator.errors import InvalidInputError
from server.ingest import IngestService
from server.labeling import SKIP_COOLDOWN_S, LabelStore

COOLDOWN_S = 600.0


@pytest.fixture
def skipping(service: IngestService, clock: Any) -> LabelStore:
    return LabelStore(service.catalog, clock=clock, rng=0, skip_cooldown_s=COOLDOWN_S)


def skip_first(store: LabelStore, holder: str) -> str:
    """Lease one frame to ``holder`` and give it back at once; the frame id."""
    (task,) = store.lease(holder, count=1)
    store.release(task.lease.lease_id, holder)
    return task.frame_id


def test_without_a_cool_down_a_skipped_frame_comes_straight_back(
    service: IngestService, frames: list[str], clock: Any
) -> None:
    """The problem the cool-down solves: the strategy's top frame stays the top frame."""
    store = LabelStore(service.catalog, clock=clock, rng=0, skip_cooldown_s=0)
    skipped = skip_first(store, "alice")
    (again,) = store.lease("alice", count=1)
    assert again.frame_id == skipped


def test_a_skipped_frame_is_not_handed_back_to_the_same_labeler(
    skipping: LabelStore, frames: list[str], clock: Any
) -> None:
    skipped = skip_first(skipping, "alice")
    clock.advance(1)
    (next_task,) = skipping.lease("alice", count=1)
    assert next_task.frame_id != skipped
    rest = {t.frame_id for t in skipping.lease("alice", count=100)}
    assert skipped not in rest and rest | {next_task.frame_id} == set(frames) - {skipped}
    assert skipping.lease("alice", count=5) == []  # only the skipped frame is left: not for alice


def test_another_labeler_gets_the_skipped_frame_at_once(
    skipping: LabelStore, frames: list[str]
) -> None:
    skipped = skip_first(skipping, "alice")
    held = {t.frame_id for t in skipping.lease("alice", count=100)}
    assert held == set(frames) - {skipped}
    (bobs,) = skipping.lease("bob", count=5)
    assert bobs.frame_id == skipped and bobs.lease.holder == "bob"


def test_after_the_cool_down_the_skipped_frame_can_come_back(
    skipping: LabelStore, frames: list[str], clock: Any
) -> None:
    skipped = skip_first(skipping, "alice")
    held = {t.frame_id for t in skipping.lease("alice", count=100, lease_s=3600)}
    assert skipped not in held
    clock.advance(COOLDOWN_S - 1)
    assert skipping.lease("alice", count=5) == []
    clock.advance(1)  # now == released_at + cool-down: over
    (back,) = skipping.lease("alice", count=5)
    assert back.frame_id == skipped


def test_a_skip_counts_per_frame_and_a_later_skip_restarts_the_cool_down(
    skipping: LabelStore, frames: list[str], clock: Any
) -> None:
    first = skip_first(skipping, "alice")
    clock.advance(COOLDOWN_S)
    (task,) = [t for t in skipping.lease("alice", count=100) if t.frame_id == first]
    clock.advance(60)
    skipping.release(task.lease.lease_id, "alice")  # skipped a second time
    clock.advance(COOLDOWN_S - 60)  # the first skip's cool-down is long over; the second's not
    assert first not in {t.frame_id for t in skipping.lease("alice", count=100)}


def test_an_expired_lease_is_no_skip(skipping: LabelStore, frames: list[str], clock: Any) -> None:
    held = {t.frame_id for t in skipping.lease("alice", count=100, lease_s=60)}
    assert held == set(frames)
    clock.advance(60)
    back = {t.frame_id for t in skipping.lease("alice", count=100)}
    assert back == set(frames)


def test_the_default_cool_down_is_fifteen_minutes(
    store: LabelStore, frames: list[str], clock: Any
) -> None:
    assert SKIP_COOLDOWN_S == 900.0 and store.skip_cooldown.total_seconds() == SKIP_COOLDOWN_S
    skipped = skip_first(store, "alice")
    store.lease("alice", count=100, lease_s=3600)
    clock.advance(SKIP_COOLDOWN_S - 1)
    assert store.lease("alice", count=5) == []
    clock.advance(1)
    assert [t.frame_id for t in store.lease("alice", count=5)] == [skipped]


@pytest.mark.parametrize("value", [-1, True, "900", 1e9])
def test_a_bad_cool_down_is_refused(service: IngestService, value: object) -> None:
    with pytest.raises(InvalidInputError, match="skip_cooldown_s"):
        LabelStore(service.catalog, skip_cooldown_s=value)  # type: ignore[arg-type]
