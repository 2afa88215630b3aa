"""The MetadataSink contract, run against SqliteSink and SnowflakeSink (through fakesnow)."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from curator.errors import InvalidInputError
from server.warehouse import TABLES, MetadataSink, get_table, validate_rows

SinkFactory = Callable[[], MetadataSink]
Rows = Callable[..., list[dict[str, Any]]]


UPLOAD = {"frame_id": "x", "device_id": "cam", "device_seq": 1}


def by_key(table: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The oracle: normalised rows, last one per key, sorted by key."""
    spec = get_table(table)
    last = {tuple(r[k] for k in spec.key): r for r in validate_rows(spec, rows)}
    return [last[k] for k in sorted(last)]


class TestMetadataSinkContract:
    def test_ensure_tables_is_idempotent_and_keeps_rows(
        self, make_sink: SinkFactory, rows_of: Rows
    ) -> None:
        sink = make_sink()
        sink.ensure_tables()
        sink.ensure_tables()
        assert {name: sink.count(name) for name in TABLES} == dict.fromkeys(TABLES, 0)
        sink.write("labels", rows_of("labels", 3))
        again = make_sink()
        again.ensure_tables()
        assert again.count("labels") == 3
        assert again.read("labels") == by_key("labels", rows_of("labels", 3))

    def test_write_then_read_returns_every_column_ordered_by_key(
        self, make_sink: SinkFactory, rows_of: Rows
    ) -> None:
        rows = rows_of("frames", 12)
        shuffled = rows[:]
        random.Random(0).shuffle(shuffled)
        sink = make_sink()
        sink.write("frames", shuffled)
        got = sink.read("frames")
        assert got == by_key("frames", rows)
        assert [r["frame_id"] for r in got] == sorted(r["frame_id"] for r in rows)
        assert sink.count("frames") == 12
        assert sink.count("labels") == 0

    def test_rewriting_the_same_rows_leaves_one_row_each(
        self, make_sink: SinkFactory, rows_of: Rows
    ) -> None:
        sink = make_sink()
        rows = rows_of("frames", 5)
        sink.write("frames", rows)
        sink.write("frames", rows)
        sink.write("frames", rows[2:])
        assert sink.count("frames") == 5
        assert sink.read("frames") == by_key("frames", rows)

    def test_an_update_of_non_key_columns_wins_and_omitted_columns_become_null(
        self, make_sink: SinkFactory, rows_of: Rows
    ) -> None:
        sink = make_sink()
        first, second = rows_of("frames", 2)
        sink.write("frames", [first, second])
        key = {"device_id": first["device_id"], "device_seq": first["device_seq"]}
        update = {**key, "status": "duplicate", "similarity": 0.987}
        sink.write("frames", [update])
        got = {(r["device_id"], r["device_seq"]): r for r in sink.read("frames")}
        upload = (first["device_id"], first["device_seq"])
        assert got[upload] == by_key("frames", [update])[0]
        assert got[upload]["frame_id"] is None
        assert got[(second["device_id"], second["device_seq"])] == by_key("frames", [second])[0]
        assert sink.count("frames") == 2

    def test_a_batch_with_the_same_key_twice_keeps_the_last(
        self, make_sink: SinkFactory, rows_of: Rows
    ) -> None:
        sink = make_sink()
        a, b = rows_of("labels", 2)
        a2 = {**a, "class_name": "sneaker", "labeler": "bob"}
        sink.write("labels", [a, b, a2])
        assert sink.read("labels") == by_key("labels", [b, a2])
        assert sink.read("labels")[0]["class_name"] == "sneaker"

    @pytest.mark.parametrize("table", sorted(TABLES))
    def test_every_table_upserts_on_its_natural_key(
        self, make_sink: SinkFactory, rows_of: Rows, table: str
    ) -> None:
        spec = TABLES[table]
        sink = make_sink()
        rows = rows_of(table, 3)
        sink.write(table, rows)
        # same keys, every other column changed: still three rows, the new values win
        changed = rows_of(table, 3, start=10)
        for old, new in zip(rows, changed, strict=True):
            new.update({k: old[k] for k in spec.key})
        sink.write(table, changed)
        assert sink.count(table) == 3
        assert sink.read(table) == by_key(table, changed)

    def test_the_composite_key_needs_both_columns_to_match(
        self, make_sink: SinkFactory, rows_of: Rows
    ) -> None:
        sink = make_sink()
        base = rows_of("device_heartbeats", 1)[0]
        later = base["sent_at"] + dt.timedelta(microseconds=1)
        same_instant = base["sent_at"].astimezone(dt.timezone(dt.timedelta(hours=-7)))
        rows = [
            base,
            {**base, "sent_at": later, "counters": {"kept": 2}},  # same device, later beat
            {**base, "device_id": "cam-other"},  # same time, other device
        ]
        sink.write("device_heartbeats", rows)
        assert sink.count("device_heartbeats") == 3
        # the same instant written with another UTC offset is the same key
        sink.write("device_heartbeats", [{**base, "sent_at": same_instant, "counters": {"v": 2}}])
        got = sink.read("device_heartbeats")
        assert len(got) == 3
        assert [(r["device_id"], r["sent_at"]) for r in got] == [
            ("cam-other", base["sent_at"]),
            (base["device_id"], base["sent_at"]),
            (base["device_id"], later),
        ]
        assert got[1]["counters"] == {"v": 2}

    def test_json_round_trips(self, make_sink: SinkFactory) -> None:
        values: list[Any] = [
            {"entropy": 0.71, "novelty": 1e-12, "big": 2**53, "neg": -3},
            {"nested": {"list": [1, "two", 3.5, None, True, {"deep": []}]}, "empty": {}},
            {"unicode": "naïve façade 日本 🚲", "quote": 'a "b" \\ c', "newline": "x\ny"},
            [0.1, 0.2, 0.3],
            "just a string",
            42,
            False,
            None,
        ]
        rows = [
            {"run_id": f"run-{i}", "status": "succeeded", "metrics": v}
            for i, v in enumerate(values)
        ]
        sink = make_sink()
        sink.write("training_runs", rows)
        got = sink.read("training_runs")
        assert [r["metrics"] for r in got] == values

    def test_timestamps_round_trip_as_utc(self, make_sink: SinkFactory) -> None:
        ist = dt.timezone(dt.timedelta(hours=5, minutes=30))
        started = dt.datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=ist)
        old = dt.datetime(1999, 12, 31, 0, 0, 0, 1, tzinfo=dt.UTC)
        sink = make_sink()
        sink.write(
            "training_runs",
            [
                {"run_id": "a", "started_at": started, "finished_at": None},
                {"run_id": "b", "started_at": old, "finished_at": old + dt.timedelta(days=1)},
            ],
        )
        a, b = sink.read("training_runs")
        assert a["started_at"] == started and a["started_at"].utcoffset() == dt.timedelta(0)
        assert a["started_at"] == dt.datetime(2024, 2, 29, 18, 29, 59, 999999, tzinfo=dt.UTC)
        assert a["finished_at"] is None
        assert b["started_at"] == old and b["finished_at"] == old + dt.timedelta(days=1)
        assert b["finished_at"].utcoffset() == dt.timedelta(0)

    def test_numbers_booleans_and_nulls_round_trip(self, make_sink: SinkFactory) -> None:
        rows: list[dict[str, Any]] = [
            {
                "model_version": "m1",
                "promoted": True,
                "metrics": {"acc": 0.9},
                "created_at": dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
            },
            {"model_version": "m2", "promoted": np.bool_(False), "sha256": "ab" * 32},
            {"model_version": "m3"},
        ]
        frame: dict[str, Any] = {
            "frame_id": "f",
            "device_id": "cam",
            "status": "accepted",
            "device_seq": np.int64(2**63 - 1),
            "similarity": np.float32(0.25),
            "dedup_threshold": 1,
            "width": 0,
            "height": -1,
        }
        sink = make_sink()
        sink.write("model_versions", rows)
        sink.write("frames", [frame])
        m1, m2, m3 = sink.read("model_versions")
        assert m1["promoted"] is True and m2["promoted"] is False and m3["promoted"] is None
        assert m2["sha256"] == "ab" * 32 and m3["metrics"] is None and m3["created_at"] is None
        (f,) = sink.read("frames")
        assert f["device_seq"] == 2**63 - 1 and type(f["device_seq"]) is int
        assert f["similarity"] == 0.25 and type(f["similarity"]) is float
        assert f["dedup_threshold"] == 1.0 and type(f["dedup_threshold"]) is float
        assert (f["width"], f["height"], f["scores"]) == (0, -1, None)

    @pytest.mark.parametrize(
        ("bad", "message"),
        [
            ({**UPLOAD, "status": "accepted", "colour": "red"}, "colour"),
            ({"device_id": "cam", "status": "accepted"}, "device_seq"),
            ({**UPLOAD, "status": "accepted", "width": "wide"}, "width"),
            (
                {**UPLOAD, "status": "accepted", "captured_at": dt.datetime(2024, 1, 1)},
                "captured_at",
            ),
        ],
    )
    def test_bad_rows_are_rejected_before_anything_is_written(
        self, make_sink: SinkFactory, rows_of: Rows, bad: Any, message: str
    ) -> None:
        sink = make_sink()
        good = rows_of("frames", 2)
        with pytest.raises(InvalidInputError, match=message):
            sink.write("frames", [*good, bad])
        assert sink.count("frames") == 0

    def test_an_unknown_table_is_rejected_with_the_valid_names(
        self, make_sink: SinkFactory
    ) -> None:
        sink = make_sink()
        with pytest.raises(InvalidInputError, match="dedup_decisions"):
            sink.write("frame", [{"frame_id": "x"}])
        with pytest.raises(InvalidInputError, match="unknown warehouse table"):
            sink.read("nope")

    def test_an_empty_write_is_a_no_op(self, make_sink: SinkFactory) -> None:
        sink = make_sink()
        sink.write("frames", [])
        sink.write("labels", iter([]))
        assert sink.count("frames") == 0 and sink.read("labels") == []

    def test_ping_answers_and_close_then_reuse_reconnects(
        self, make_sink: SinkFactory, rows_of: Rows
    ) -> None:
        sink = make_sink()
        sink.ping()
        sink.write("labels", rows_of("labels", 2))
        sink.close()
        sink.close()
        assert sink.count("labels") == 2

    def test_random_batches_match_a_last_write_wins_model(
        self, make_sink: SinkFactory, rows_of: Rows
    ) -> None:
        rng = random.Random(7)
        pool = rows_of("dedup_decisions", 40)
        sink = make_sink()
        written: list[dict[str, Any]] = []
        for step in range(6):
            batch = []
            for _ in range(rng.randint(0, 12)):
                row = dict(rng.choice(pool[:15]))  # few keys, so batches collide
                row["similarity"] = round(rng.random(), 6)
                row["method"] = rng.choice(["exact", "near"])
                row["decided_at"] = row["decided_at"] + dt.timedelta(seconds=step)
                batch.append(row)
            sink.write("dedup_decisions", batch)
            written += batch
        assert sink.read("dedup_decisions") == by_key("dedup_decisions", written)
        uploads = {(r["device_id"], r["device_seq"]) for r in written}
        assert sink.count("dedup_decisions") == len(uploads)
