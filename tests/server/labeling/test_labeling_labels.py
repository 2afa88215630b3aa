"""Labels against a real catalog: class-name validation, corrections kept as a chain, the lease
ending with the label, the warehouse row in the same transaction."""

from __future__ import annotations

import json
import sqlite3
from datetime import timedelta
from typing import Any

import pytest

from curator.errors import InvalidInputError
from server.errors import Forbidden, NotFound
from server.ingest import IngestService
from server.labeling import LabelStore, UnknownClassName


def outbox_labels(svc: IngestService) -> list[dict[str, Any]]:
    rows = svc.catalog.db.connection.execute(
        "SELECT row FROM warehouse_outbox WHERE table_name = 'labels' ORDER BY id"
    )
    return [json.loads(r[0]) for r in rows]


def test_a_class_not_of_the_model_is_refused_with_the_valid_names(
    store: LabelStore, frames: list[str]
) -> None:
    with pytest.raises(UnknownClassName, match=r"valid: '0', '1', '2'") as info:
        store.label(frames[0], "cat", "alice")
    assert info.value.valid == ("0", "1", "2")
    store.register_class_names("m1", ["cat", "dog", "bird"])
    with pytest.raises(UnknownClassName, match=r"'cat', 'dog', 'bird'"):
        store.label(frames[0], "0", "alice")
    assert store.label(frames[0], "dog", "alice").class_name == "dog"
    assert store.history(frames[0])[0].model_version == "m1"


@pytest.mark.parametrize("names", [["a"], ["a", "a"], ["a", ""], "ab", ["a", 3]])
def test_bad_class_names_are_refused(store: LabelStore, names: Any) -> None:
    with pytest.raises(InvalidInputError):
        store.register_class_names("m1", names)


def test_a_frame_of_an_embedding_only_model_has_no_valid_class_until_names_are_registered(
    store: LabelStore, service: IngestService, kit: Any
) -> None:
    (fid,) = kit.ingest(service, kit.record(50, kit.near(50, 50), None, model="emb"))
    with pytest.raises(UnknownClassName, match="none known"):
        store.label(fid, "0", "alice")
    store.register_class_names("emb", ["car", "person"])
    assert store.label(fid, "car", "alice").class_name == "car"


def test_unknown_frames_and_leases_are_refused(store: LabelStore, frames: list[str]) -> None:
    with pytest.raises(NotFound):
        store.label("0" * 64, "0", "alice")
    with pytest.raises(NotFound):
        store.label(frames[0], "0", "alice", lease_id="lease_nope")
    a, b = store.lease("alice", count=2)
    with pytest.raises(InvalidInputError, match="another frame"):
        store.label(a.frame_id, "0", "alice", lease_id=b.lease.lease_id)
    with pytest.raises(Forbidden):
        store.label(a.frame_id, "0", "bob", lease_id=a.lease.lease_id)
    assert store.history(a.frame_id) == []  # nothing stored by the refusals


def test_a_second_label_is_a_correction_chained_to_the_first_and_nothing_is_overwritten(
    store: LabelStore, service: IngestService, frames: list[str], clock: Any
) -> None:
    first = store.label(frames[0], "0", "alice")
    clock.advance(10)
    second = store.label(frames[0], "2", "bob")
    clock.advance(10)
    third = store.label(frames[0], "1", "alice")
    assert first.supersedes is None
    assert second.supersedes == first.label_id and third.supersedes == second.label_id
    history = store.history(frames[0])
    assert [h.label_id for h in history] == [first.label_id, second.label_id, third.label_id]
    assert [(h.class_name, h.labeler) for h in history] == [
        ("0", "alice"),
        ("2", "bob"),
        ("1", "alice"),
    ]
    assert history[1].created_at == first.created_at + timedelta(seconds=10)
    assert store.current_label(frames[0]) == third
    assert [x.label_id for x in store.current_labels()] == [third.label_id]
    rows = outbox_labels(service)
    assert [r["label_id"] for r in rows] == [first.label_id, second.label_id, third.label_id]
    assert rows[1]["supersedes"] == first.label_id and rows[1]["labeler"] == "bob"
    assert rows[0]["class_name"] == "0" and rows[0]["frame_id"] == frames[0]
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):  # no fork of the chain
        service.catalog.db.connection.execute(
            "INSERT INTO labels (label_id, frame_id, class_name, labeler, created_at, supersedes)"
            " VALUES ('x', ?, '0', 'eve', 'now', ?)",
            (frames[0], first.label_id),
        )


def test_labeling_ends_the_frames_lease_and_keeps_it_out_of_the_pool(
    store: LabelStore, frames: list[str], clock: Any
) -> None:
    tasks = store.lease("alice", count=20, lease_s=60)
    done = tasks[0]
    row = store.label(done.frame_id, "1", "alice", lease_id=done.lease.lease_id)
    assert row.lease_id == done.lease.lease_id
    lease = store.get_lease(done.lease.lease_id)
    assert lease.release_reason == "labeled" and lease.released_at == clock.now
    clock.advance(61)  # every other lease expired
    again = {t.frame_id for t in store.lease("bob", count=20)}
    assert again == set(frames) - {done.frame_id}


def test_a_label_and_its_warehouse_row_roll_back_together(
    store: LabelStore, service: IngestService, frames: list[str]
) -> None:
    with pytest.raises(RuntimeError), service.catalog.atomic() as conn:
        store.label(frames[0], "0", "alice")
        assert conn.execute("SELECT count(*) FROM labels").fetchone()[0] == 1
        raise RuntimeError("crash before commit")
    assert store.history(frames[0]) == [] and outbox_labels(service) == []
