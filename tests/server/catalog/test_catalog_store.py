"""Catalog on a real SQLite file: storage round trips, idempotency rules, queries."""

from __future__ import annotations

import dataclasses
import sqlite3
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from curator.errors import InvalidInputError
from server.catalog import Catalog
from server.catalog.schema import CATALOG_MIGRATIONS
from server.db import SQLiteFile, applied_migrations


def test_a_recorded_row_reads_back_identically(catalog: Catalog, frames: Any) -> None:
    bare = frames.row(
        3,
        captured_at=None,
        predicted_class=None,
        class_probabilities=None,
        keep_value=None,
        keep_threshold=None,
        scores={},
        quality={},
    )
    rows = [frames.row(1), frames.near_duplicate(2, of=1), bare]
    answers = catalog.record(rows)
    assert [a.ingest_seq for a in answers] == [1, 2, 3]
    for given, answer in zip(rows, answers, strict=True):
        assert answer == dataclasses.replace(given, ingest_seq=answer.ingest_seq)
        assert catalog.get(given.frame_id) == answer
    assert catalog.get("0" * 64) is None
    assert catalog.max_seq() == 3
    assert catalog.counts() == {"accepted": 2, "duplicate": 1}
    assert "catalog.0001_create" in applied_migrations(catalog.db)


def test_embeddings_come_back_bit_identical(catalog: Catalog, frames: Any) -> None:
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 256, 4 * 16, dtype=np.uint8).tobytes()  # any bits, NaN payloads too
    raw = np.float32(-0.0).tobytes() + np.float32(1e-45).tobytes() + raw[8:]
    catalog.record([frames.row(1, embedding=raw, dim=16)])
    stored = catalog.get(frames.frame_id(1))
    assert stored is not None and stored.embedding == raw and stored.embedding_dim == 16
    ((_, _, vector),) = catalog.accepted_since("m1")
    assert vector.dtype == np.float32 and vector.shape == (16,)
    assert vector.tobytes() == raw


def test_recording_the_same_batch_again_changes_nothing(
    catalog: Catalog, frames: Any, tmp_path: Path
) -> None:
    batch = [frames.row(1), frames.near_duplicate(2, of=1), frames.row(3, status="rejected")]
    first = catalog.record(batch)
    before = frames.dump(tmp_path / "catalog.db")
    later = [dataclasses.replace(r, received_at=r.received_at + timedelta(hours=1)) for r in batch]
    again = catalog.record(later)
    assert again[:2] == first[:2]  # stored answers, first receipt time included
    assert [a.to_result() for a in again] == [a.to_result() for a in first]
    assert catalog.record(batch) == first
    assert frames.dump(tmp_path / "catalog.db") == before
    assert catalog.counts() == {"accepted": 1, "duplicate": 1}


def test_a_resent_frame_keeps_its_first_answer(catalog: Catalog, frames: Any) -> None:
    (accepted,) = catalog.record([frames.row(2)])
    catalog.record([frames.row(1)])
    # the re-sent frame would now be judged a near duplicate of 1: the stored answer wins
    (again,) = catalog.record([frames.near_duplicate(2, of=1)])
    assert again == accepted and again.status == "accepted"


def test_the_same_image_from_another_device_is_an_exact_duplicate(
    catalog: Catalog, frames: Any
) -> None:
    (original,) = catalog.record([frames.row(1, device="cam-1", seq=1)])
    later = frames.T0 + timedelta(minutes=1)
    other = frames.row(1, device="cam-2", seq=7, at=later, batch_id="b2")
    (answer,) = catalog.record([other])
    assert (answer.device_id, answer.device_seq, answer.status) == ("cam-2", 7, "duplicate")
    assert answer.duplicate_of == original.frame_id
    assert (answer.similarity, answer.dedup_method) == (1.0, "exact")
    assert (answer.received_at, answer.batch_id, answer.ingest_seq) == (later, "b2", None)
    assert answer.to_result().model_dump() == {
        "frame_id": original.frame_id,
        "device_seq": 7,
        "status": "duplicate",
        "duplicate_of": original.frame_id,
        "similarity": 1.0,
        "reason": None,
    }
    # re-sending it gives the same answer (first receipt time included), stores nothing new
    resent = dataclasses.replace(other, received_at=later + timedelta(hours=2), batch_id="b3")
    assert catalog.record([resent]) == [answer]
    assert catalog.get(original.frame_id) == original
    assert catalog.max_seq() == 1
    assert catalog.counts() == {"accepted": 1, "duplicate": 1}
    # and the same device re-sending the image under a new seq is a duplicate too
    (again,) = catalog.record([frames.row(1, device="cam-1", seq=2)])
    assert again.status == "duplicate" and again.duplicate_of == original.frame_id


def test_an_exact_repeat_of_a_near_duplicate_names_the_accepted_frame(
    catalog: Catalog, frames: Any
) -> None:
    (original,) = catalog.record([frames.row(1, device="cam-1", seq=1)])
    (near,) = catalog.record([frames.near_duplicate(2, of=1, device="cam-2", seq=1)])
    (answer,) = catalog.record([frames.row(2, device="cam-3", seq=1)])
    assert (answer.frame_id, answer.status, answer.dedup_method) == (
        near.frame_id,
        "duplicate",
        "exact",
    )
    # the same bytes as the near duplicate: its accepted original, at its similarity
    assert (answer.duplicate_of, answer.similarity) == (original.frame_id, near.similarity)
    assert catalog.get(answer.duplicate_of).status == "accepted"  # type: ignore[union-attr]
    assert catalog.record([frames.row(2, device="cam-3", seq=1)]) == [answer]


def test_another_frame_under_a_used_seq_is_rejected(catalog: Catalog, frames: Any) -> None:
    (original,) = catalog.record([frames.row(1, seq=5)])
    (answer,) = catalog.record([frames.row(2, seq=5)])
    assert answer.status == "rejected" and answer.frame_id == frames.frame_id(2)
    assert answer.reason is not None and answer.reason.startswith("device_seq_reused: ")
    assert original.frame_id in answer.reason and "cam-1" in answer.reason
    assert catalog.get(frames.frame_id(2)) is None
    assert catalog.record([frames.row(2, seq=5)]) == [answer]
    assert catalog.get(original.frame_id) == original
    # the refused image is not blocked: under its own unused seq it is accepted
    (fine,) = catalog.record([frames.row(2, seq=6)])
    assert fine.status == "accepted"


def test_repeats_inside_one_batch_follow_the_same_rules(catalog: Catalog, frames: Any) -> None:
    answers = catalog.record(
        [frames.row(1, seq=1), frames.row(1, seq=2), frames.row(3, seq=1), frames.row(1, seq=1)]
    )
    assert [a.status for a in answers] == ["accepted", "duplicate", "rejected", "accepted"]
    assert answers[1].duplicate_of == frames.frame_id(1)
    assert answers[3] == answers[0]


def test_rejected_rows_are_answered_but_not_stored(catalog: Catalog, frames: Any) -> None:
    rejected = frames.row(1, status="rejected", reason="frame_id_mismatch: corrupt upload")
    assert catalog.record([rejected]) == [rejected]
    assert catalog.get(rejected.frame_id) is None
    # a corrupt upload never blocks the good one with the same id and seq
    (good,) = catalog.record([frames.row(1)])
    assert good.status == "accepted"


def test_a_duplicate_of_an_unknown_frame_rolls_back_the_batch(
    catalog: Catalog, frames: Any
) -> None:
    with pytest.raises(InvalidInputError, match="not in the catalog"):
        catalog.record([frames.row(1), frames.near_duplicate(2, of=99)])
    with pytest.raises(InvalidInputError, match="cannot duplicate itself"):
        catalog.record([frames.row(1), frames.near_duplicate(2, of=2)])
    assert catalog.max_seq() == 0 and catalog.counts() == {"accepted": 0, "duplicate": 0}
    # naming a frame later in the same batch is fine (checked at the end)
    answers = catalog.record([frames.near_duplicate(2, of=1), frames.row(1)])
    assert [a.status for a in answers] == ["duplicate", "accepted"]


def test_a_wrong_embedding_dimension_for_its_model_is_rejected(
    catalog: Catalog, frames: Any
) -> None:
    catalog.record([frames.row(1, dim=8)])
    assert catalog.embedding_dim("m1") == 8 and catalog.embedding_dim("m2") is None
    short, other_model = frames.row(2, dim=4), frames.row(3, dim=4, model="m2")
    answers = catalog.record([short, other_model, frames.row(4, dim=16, model="m2")])
    assert [a.status for a in answers] == ["rejected", "accepted", "rejected"]
    assert answers[0].reason is not None
    assert answers[0].reason.startswith("embedding_dim_mismatch: embedding has dimension 4")
    assert catalog.embedding_dim("m2") == 4


def test_accepted_since_is_ordered_paged_and_per_model(catalog: Catalog, frames: Any) -> None:
    rows = []
    for n in range(1, 2601):
        if n % 10 == 0:
            rows.append(frames.near_duplicate(n, of=n - 1))
        else:
            rows.append(frames.row(n, model="m1" if n % 3 else "m2", dim=8 if n % 3 else 4))
    answers = catalog.record(rows)
    oracle: dict[str, list[tuple[int, str, bytes]]] = {"m1": [], "m2": []}
    for r, a in zip(rows, answers, strict=True):
        if r.status == "accepted":
            assert a.ingest_seq is not None and r.model_version is not None
            oracle[r.model_version].append((a.ingest_seq, r.frame_id, r.embedding))
    for model, expected in oracle.items():
        got = [(s, f, v.tobytes()) for s, f, v in catalog.accepted_since(model)]
        assert got == expected
        middle = expected[len(expected) // 2][0]
        after = [(s, f) for s, f, _ in catalog.accepted_since(model, after_seq=middle, limit=7)]
        assert after == [(s, f) for s, f, _ in expected if s > middle][:7]
    assert list(catalog.accepted_since("m1", limit=0)) == []
    assert list(catalog.accepted_since("m3")) == []
    with pytest.raises(InvalidInputError, match="limit"):
        list(catalog.accepted_since("m1", limit=-1))
    ids = catalog.get_many([frames.frame_id(n) for n in range(1, 2601)] + ["f" * 64])
    assert len(ids) == 2600
    seqs = catalog.frame_id_for_seq([1, 1200, 2600, 2601, 1200])
    assert seqs == {1: frames.frame_id(1), 1200: frames.frame_id(1200), 2600: frames.frame_id(2600)}


def test_ingest_seqs_are_never_reused(catalog: Catalog, frames: Any) -> None:
    catalog.record([frames.row(1), frames.row(2)])
    conn = catalog.db.connection
    conn.execute("DELETE FROM embeddings WHERE ingest_seq = 2")
    conn.execute("DELETE FROM uploads WHERE device_seq = 2")
    conn.execute("DELETE FROM frames WHERE ingest_seq = 2")
    (third,) = catalog.record([frames.row(3)])
    assert third.ingest_seq == 3  # AUTOINCREMENT: a vector index id stays unique forever


def test_touch_device_moves_only_forward(catalog: Catalog, frames: Any) -> None:
    t0 = frames.T0
    assert catalog.device("cam-1") is None
    catalog.touch_device("cam-1", 5, t0)
    catalog.touch_device("cam-1", 3, t0 + timedelta(minutes=1))
    catalog.touch_device("cam-1", None, t0 - timedelta(minutes=1))
    device = catalog.device("cam-1")
    assert device is not None
    assert (device.first_seen, device.last_seen, device.last_seq) == (
        t0 - timedelta(minutes=1),
        t0 + timedelta(minutes=1),
        5,
    )
    with pytest.raises(InvalidInputError, match="timezone-aware"):
        catalog.touch_device("cam-1", 1, t0.replace(tzinfo=None))
    with pytest.raises(InvalidInputError, match="device_id"):
        catalog.touch_device("../cam", 1, t0)
    with pytest.raises(InvalidInputError, match="seq"):
        catalog.touch_device("cam-1", -1, t0)


def test_records_share_a_transaction_with_other_tables(tmp_path: Path, frames: Any) -> None:
    db = SQLiteFile(tmp_path / "shared.db")
    catalog = Catalog(db)
    db.connection.execute("CREATE TABLE outbox (frame_id TEXT)")
    with pytest.raises(RuntimeError), catalog.atomic() as conn:
        (answer,) = catalog.record([frames.row(1)], conn=conn)
        conn.execute("INSERT INTO outbox VALUES (?)", (answer.frame_id,))
        catalog.touch_device("cam-1", 1, frames.T0, conn=conn)
        raise RuntimeError("the warehouse write failed")
    assert catalog.get(frames.frame_id(1)) is None and catalog.device("cam-1") is None
    assert db.connection.execute("SELECT count(*) FROM outbox").fetchone() == (0,)
    with catalog.atomic() as conn:
        catalog.record([frames.row(1)], conn=conn)
        conn.execute("INSERT INTO outbox VALUES (?)", (frames.frame_id(1),))
    assert catalog.get(frames.frame_id(1)) is not None
    assert db.connection.execute("SELECT count(*) FROM outbox").fetchone() == (1,)
    catalog.close()  # does not close a shared file
    assert db.connection.execute("SELECT 1").fetchone() == (1,)
    db.close()


def test_two_threads_recording_the_same_batch_agree(tmp_path: Path, frames: Any) -> None:
    catalog = Catalog(tmp_path / "catalog.db")
    batch = [frames.row(n) for n in range(1, 200)] + [frames.near_duplicate(200, of=1)]
    results: list[list[Any]] = []
    start = threading.Barrier(2)

    def upload() -> None:
        start.wait()
        results.append(catalog.record(batch))

    threads = [threading.Thread(target=upload) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 2 and results[0] == results[1]
    assert catalog.max_seq() == 200
    catalog.close()


def test_the_schema_refuses_what_the_catalog_never_stores(catalog: Catalog) -> None:
    conn = catalog.db.connection
    base = (
        "INSERT INTO frames (frame_id, device_id, device_seq, received_at, status, blob_key,"
        " model_version, schema_version) VALUES (?, 'cam', 1, 't', ?, ?, 'm', 1)"
    )
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        conn.execute(base, ("a" * 64, "rejected", None))
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        conn.execute(base, ("a" * 64, "accepted", "/etc/passwd"))
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        conn.execute(base, ("a" * 64, "duplicate", None))  # without duplicate_of


def test_reopening_a_catalog_keeps_its_rows(tmp_path: Path, frames: Any) -> None:
    with Catalog(tmp_path / "catalog.db") as first:
        (answer,) = first.record([frames.row(1)])
    with Catalog(tmp_path / "catalog.db") as again:
        assert again.get(answer.frame_id) == answer
        assert list(applied_migrations(again.db)) == [m.name for m in CATALOG_MIGRATIONS]


def test_known_and_uploads_answer_for_any_number_of_ids(catalog: Catalog, frames: Any) -> None:
    """Past one IN (...) chunk (500 values), per device, rejected uploads left out."""
    catalog.record([frames.row(n) for n in range(1, 1201)])
    catalog.record([frames.row(5000, device="cam-2", seq=7), frames.row(5001, status="rejected")])
    asked = range(1, 1401)
    assert catalog.known(frames.frame_id(n) for n in asked) == {
        frames.frame_id(n) for n in range(1, 1201)
    }
    assert catalog.uploads("cam-1", asked) == {n: frames.frame_id(n) for n in range(1, 1201)}
    assert catalog.uploads("cam-2", [7, 8]) == {7: frames.frame_id(5000)}
    assert catalog.uploads("cam-1", [5001]) == {}
    assert catalog.frame_id_for_seq([1, 1200, 99_999]) == {
        1: frames.frame_id(1),
        1200: frames.frame_id(1200),
    }
