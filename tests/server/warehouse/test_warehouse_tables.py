"""The warehouse tables as data, and row validation at the sink boundary."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from curator.errors import InvalidInputError
from server.warehouse.tables import (
    COLUMN_TYPES,
    FRAMES,
    TABLES,
    _check_value,
    _normalise,
    decode_row,
    encode_row,
    get_table,
    last_per_key,
    validate_rows,
)

DOCS = Path(__file__).resolve().parents[3] / "docs" / "warehouse.md"


def test_the_tables_the_design_names_with_their_natural_keys() -> None:
    assert {name: t.key for name, t in TABLES.items()} == {
        "frames": ("device_id", "device_seq"),
        "dedup_decisions": ("device_id", "device_seq"),
        "labels": ("label_id",),
        "training_runs": ("run_id",),
        "model_versions": ("model_version",),
        "device_heartbeats": ("device_id", "sent_at"),
    }


@pytest.mark.parametrize("table", sorted(TABLES))
def test_each_table_is_well_formed(table: str) -> None:
    spec = TABLES[table]
    names = spec.column_names
    assert spec.name == table and re.fullmatch(r"[a-z][a-z0-9_]*", table)
    assert len(set(names)) == len(names)
    assert set(spec.key) <= set(names)
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", n) for n in names)
    assert all(c.type in COLUMN_TYPES and c.doc for c in spec.columns)
    assert [c.name for c in spec.non_key_columns] == [n for n in names if n not in spec.key]


def test_frames_holds_every_column_of_the_decision() -> None:
    assert FRAMES.column_names == (
        "frame_id", "device_id", "device_seq", "captured_at", "received_at", "model_version",
        "status", "duplicate_of", "similarity", "dedup_threshold", "reason", "keep_reason",
        "scores", "quality", "predicted_class", "width", "height", "image_bytes",
        "schema_version",
    )  # fmt: skip
    assert FRAMES.column("status").choices == ("accepted", "duplicate", "rejected")
    assert TABLES["dedup_decisions"].column("method").choices == ("exact", "near")


def test_an_unknown_table_lists_the_valid_ones() -> None:
    with pytest.raises(InvalidInputError, match=r"\['dedup_decisions', 'device_heartbeats'"):
        get_table("frame")
    with pytest.raises(InvalidInputError):
        get_table(None)  # type: ignore[arg-type]


UPLOAD = {"frame_id": "x", "device_id": "cam", "device_seq": 1}


def test_validation_normalises_rows() -> None:
    plus2 = dt.timezone(dt.timedelta(hours=2))
    (row,) = validate_rows(
        "frames",
        [
            {
                "frame_id": "f",
                "device_id": "cam",
                "status": "accepted",
                "device_seq": np.int32(3),
                "similarity": np.float32(0.5),
                "dedup_threshold": 1,
                "captured_at": dt.datetime(2024, 1, 1, 14, 0, tzinfo=plus2),
                "scores": {"a": np.float64(0.25), "b": (1, 2)},
            }
        ],
    )
    assert list(row) == list(FRAMES.column_names)
    assert type(row["device_seq"]) is int and type(row["similarity"]) is float
    assert row["dedup_threshold"] == 1.0 and type(row["dedup_threshold"]) is float
    assert row["captured_at"] == dt.datetime(2024, 1, 1, 12, 0, tzinfo=dt.UTC)
    assert row["captured_at"].tzinfo is dt.UTC
    assert row["scores"] == {"a": 0.25, "b": [1, 2]}
    assert row["reason"] is None and row["width"] is None


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (
            {**UPLOAD, "status": "accepted", "colour": "red"},
            r"unknown column\(s\) \['colour'\]",
        ),
        (
            {"status": "accepted"},
            r"missing key or required column\(s\) \['device_id', 'device_seq'\]",
        ),
        ({"device_id": None, "device_seq": 1, "status": "accepted"}, "device_id"),
        ({**UPLOAD}, r"\['status'\]"),
        ({**UPLOAD, "status": "maybe"}, "status.*one of"),
        ({**UPLOAD, "status": "accepted", "width": "wide"}, "width.*int"),
        ({**UPLOAD, "status": "accepted", "width": 1.5}, "width"),
        ({**UPLOAD, "status": "accepted", "width": True}, "width"),
        ({**UPLOAD, "status": "accepted", "width": np.bool_(True)}, "width"),
        ({**UPLOAD, "status": "accepted", "device_seq": 2**63}, "device_seq.*64 bits"),
        ({**UPLOAD, "status": "accepted", "similarity": float("nan")}, "finite"),
        ({**UPLOAD, "status": "accepted", "similarity": "0.5"}, "similarity"),
        ({**UPLOAD, "status": "accepted", "similarity": False}, "similarity"),
        ({**UPLOAD, "frame_id": 7, "status": "accepted"}, "frame_id.*str"),
        (
            {**UPLOAD, "status": "accepted", "captured_at": dt.datetime(2024, 1, 1)},
            "captured_at.*timezone-aware",
        ),
        ({**UPLOAD, "status": "accepted", "captured_at": "2024-01-01"}, "captured_at"),
        ({**UPLOAD, "status": "accepted", "scores": {"a": float("inf")}}, "scores"),
        ({**UPLOAD, "status": "accepted", "scores": {1, 2}}, "scores"),
        ({**UPLOAD, "status": "accepted", "scores": np.zeros(2)}, "scores"),
        ("not a row", "must be a dict"),
    ],
)
def test_bad_rows_name_what_is_wrong(bad: Any, message: str) -> None:
    good = {"frame_id": "ok", "device_id": "cam", "device_seq": 0, "status": "accepted"}
    with pytest.raises(InvalidInputError, match=message) as err:
        validate_rows("frames", [good, bad])
    assert "frames row 1" in str(err.value)


def test_a_single_dict_is_not_a_list_of_rows() -> None:
    with pytest.raises(InvalidInputError, match="one dict"):
        validate_rows("labels", {"label_id": "x"})  # type: ignore[dict-item]


def test_booleans_must_be_booleans() -> None:
    with pytest.raises(InvalidInputError, match="promoted"):
        validate_rows("model_versions", [{"model_version": "m", "promoted": 1}])


def test_the_last_row_per_key_wins_in_first_seen_order() -> None:
    t = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    rows = validate_rows(
        "device_heartbeats",
        [
            {"device_id": "a", "sent_at": t, "counters": {"n": 1}},
            {"device_id": "b", "sent_at": t, "counters": {"n": 2}},
            {"device_id": "a", "sent_at": t.astimezone(dt.timezone(dt.timedelta(hours=3))),
             "counters": {"n": 3}},
        ],
    )  # fmt: skip
    kept = last_per_key(TABLES["device_heartbeats"], rows)
    assert [(r["device_id"], r["counters"]["n"]) for r in kept] == [("a", 3), ("b", 2)]


_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
_json = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_aware = st.datetimes(
    min_value=dt.datetime(1900, 1, 2), max_value=dt.datetime(2200, 1, 1),
    timezones=st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=-9, minutes=-30))]),
)  # fmt: skip


@given(
    seq=st.integers(-(2**63), 2**63 - 1),
    sim=st.none() | st.floats(allow_nan=False, allow_infinity=False),
    at=st.none() | _aware,
    scores=_json,
    status=st.sampled_from(["accepted", "duplicate", "rejected"]),
)
def test_rows_survive_the_outbox_encoding(
    seq: int, sim: float | None, at: dt.datetime | None, scores: Any, status: str
) -> None:
    (row,) = validate_rows(
        FRAMES,
        [{"frame_id": "f", "device_id": "cam", "status": status, "device_seq": seq,
          "similarity": sim, "captured_at": at, "scores": scores}],
    )  # fmt: skip
    decoded = decode_row(FRAMES, json.loads(json.dumps(encode_row(FRAMES, row))))
    assert decoded == row
    assert validate_rows(FRAMES, [decoded]) == [row]  # normalising is idempotent


def test_the_docs_describe_every_table_and_column() -> None:
    text = DOCS.read_text()
    for spec in TABLES.values():
        assert f"### `{spec.name}`" in text
        section = text.split(f"### `{spec.name}`", 1)[1].split("###", 1)[0]
        for c in spec.columns:
            assert f"| `{c.name}` | {c.type} |" in section, (spec.name, c.name)
        assert ", ".join(f"`{k}`" for k in spec.key) in section


@given(
    value=_json.filter(lambda v: v is not None)
    | _aware
    | st.floats()
    | st.integers(-(2**70), 2**70)
    | st.dictionaries(st.text(max_size=4), st.floats() | st.integers(), max_size=4)
    | st.just({"huge": 10**5000})  # past int-to-str's digit limit: the general path refuses
)
def test_the_fast_path_agrees_with_the_general_one(value: Any) -> None:
    for column in {(c.type, c.choices): c for t in TABLES.values() for c in t.columns}.values():
        try:
            expected = _normalise(column, value, "row 0")
        except InvalidInputError:
            with pytest.raises(InvalidInputError):
                _check_value(column, value, "row 0")
            continue
        got = _check_value(column, value, "row 0")
        assert got == expected and type(got) is type(expected), column.type
