"""ModelRegistry on a real catalog file, blob folder and outbox: registration and its
idempotency, one version per snapshot, contract checks, promotion order, the warehouse rows."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path
from typing import Any

import onnx
import pytest
from testkit.models import linear_onnx

from curator.errors import InvalidInputError, ModelContractError
from server.catalog import Catalog
from server.errors import NotFound, Unavailable
from server.registry import ModelRegistry, RegistryConflict
from server.warehouse import Outbox, SqliteSink


def renamed_output(data: bytes, old: str = "embedding", new: str = "feat") -> bytes:
    """``data`` with the graph output ``old`` renamed to ``new`` (a contract break)."""
    model = onnx.load_from_string(data)
    for node in model.graph.node:
        for i, name in enumerate(node.output):
            if name == old:
                node.output[i] = new
    for output in model.graph.output:
        if output.name == old:
            output.name = new
    return bytes(model.SerializeToString())


def without_metadata(data: bytes, key: str) -> bytes:
    """``data`` without the metadata entry ``key``."""
    model = onnx.load_from_string(data)
    kept = [p for p in model.metadata_props if p.key != key]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    return bytes(model.SerializeToString())


def count(catalog: Catalog) -> int:
    (n,) = catalog.db.connection.execute("SELECT count(*) FROM model_versions").fetchone()
    return int(n)


def test_register_stores_the_file_and_the_version(
    registry: ModelRegistry, model_v1: bytes, tmp_path: Path
) -> None:
    info = registry.register(
        model_v1, parent_version=None, snapshot_key="snap-1", metrics={"accuracy": 0.75}
    )
    assert info.model_version == "m1"
    assert info.sha256 == hashlib.sha256(model_v1).hexdigest()
    assert info.size_bytes == len(model_v1)
    assert info.snapshot_key == "snap-1" and info.parent_version is None
    assert info.metrics == {"accuracy": 0.75}
    assert info.promoted is False
    assert info.download_path == "/v1/models/m1/file"
    assert info.created_at.utcoffset() is not None
    # the file is in the blob folder under its content-addressed key
    entry = registry.entry("m1")
    sha = info.sha256
    assert entry.blob_key == f"{sha[:2]}/{sha[2:4]}/{sha}.onnx"
    assert (tmp_path / "blobs" / sha[:2] / sha[2:4] / f"{sha}.onnx").read_bytes() == model_v1
    assert registry.read_file("m1") == (info, model_v1)
    assert registry.get("m1") == info
    assert registry.list() == [info]


def test_the_same_bytes_again_return_the_stored_version_and_write_nothing(
    registry: ModelRegistry, catalog: Catalog, outbox: Outbox, model_v1: bytes
) -> None:
    first = registry.add(model_v1, snapshot_key="snap-1", metrics={"accuracy": 0.5})
    again = registry.add(bytearray(model_v1), snapshot_key="other", metrics={"accuracy": 0.9})
    assert first.created and not again.created
    assert again.info == first.info  # as first stored: snapshot and metrics of the first call
    assert count(catalog) == 1 and outbox.pending() == 1


def test_a_version_registered_with_other_bytes_is_a_conflict(
    registry: ModelRegistry, catalog: Catalog, model_v1: bytes
) -> None:
    registry.register(model_v1)
    other = linear_onnx(version="m1", seed=99)
    with pytest.raises(RegistryConflict, match="'m1' is registered with other bytes"):
        registry.register(other)
    assert count(catalog) == 1
    assert registry.read_file("m1")[1] == model_v1


def test_one_model_version_per_snapshot(
    registry: ModelRegistry, catalog: Catalog, model_v1: bytes, model_v2: bytes
) -> None:
    registry.register(model_v1, snapshot_key="snap-7")
    assert registry.register(model_v1, snapshot_key="snap-7").model_version == "m1"
    with pytest.raises(RegistryConflict, match=r"snapshot 'snap-7' already yielded .*'m1'"):
        registry.register(model_v2, snapshot_key="snap-7")
    assert [i.model_version for i in registry.list()] == ["m1"]
    # versions without a snapshot do not collide with each other
    registry.register(model_v2)
    registry.register(linear_onnx(version="m3", seed=3))
    assert count(catalog) == 3


def test_the_table_enforces_snapshot_uniqueness_too(
    registry: ModelRegistry, catalog: Catalog, model_v1: bytes
) -> None:
    registry.register(model_v1, snapshot_key="s")
    with pytest.raises(sqlite3.IntegrityError):
        catalog.db.connection.execute(
            "INSERT INTO model_versions (model_version, sha256, size_bytes, blob_key,"
            " snapshot_key, created_at) VALUES ('x', ?, 1, 'k', 's', 't')",
            ("0" * 64,),
        )


def _without(key: str) -> bytes:
    return without_metadata(linear_onnx(version="bad"), key)


def _garbage() -> bytes:
    return b"\x08\x07garbage, not a protobuf" * 3


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: b"", "empty"),
        (_garbage, "not a valid ONNX model"),
        (lambda: renamed_output(linear_onnx(version="bad")), "embedding"),
        (lambda: _without("curator.model_version"), "model_version"),
        (lambda: _without("curator.class_names"), "class_names"),
    ],
    ids=["empty", "garbage", "renamed-output", "no-version", "no-class-names"],
)  # fmt: skip
def test_contract_breaking_bytes_are_refused_and_nothing_is_stored(
    registry: ModelRegistry, catalog: Catalog, tmp_path: Path, make: Any, match: str
) -> None:
    with pytest.raises(ModelContractError, match=match):
        registry.register(make())
    assert count(catalog) == 0
    assert not [p for p in (tmp_path / "blobs").rglob("*") if p.is_file()]


def test_outputs_that_disagree_with_the_metadata_are_refused(registry: ModelRegistry) -> None:
    model = onnx.load_from_string(linear_onnx(version="liar", dim=16))
    for prop in model.metadata_props:
        if prop.key == "curator.embedding_dim":
            prop.value = "8"
    with pytest.raises(ModelContractError, match="embedding"):
        registry.register(model.SerializeToString())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"metrics": {"accuracy": float("nan")}}, "finite"),
        ({"metrics": {"accuracy": True}}, "number"),
        ({"metrics": {"": 1.0}}, "metric name"),
        ({"metrics": [("accuracy", 1.0)]}, "mapping"),
        ({"snapshot_key": "x" * 201}, "snapshot_key"),
        ({"snapshot_key": "a\nb"}, "snapshot_key"),
        ({"parent_version": ""}, "parent_version"),
        ({"parent_version": "a/b"}, "parent_version"),
        ({"parent_version": "m1"}, "own parent"),
    ],
)
def test_malformed_arguments_are_refused(
    registry: ModelRegistry, catalog: Catalog, model_v1: bytes, kwargs: Any, match: str
) -> None:
    with pytest.raises(InvalidInputError, match=match):
        registry.register(model_v1, **kwargs)
    assert count(catalog) == 0


def test_a_version_name_with_a_slash_is_refused(registry: ModelRegistry) -> None:
    with pytest.raises(InvalidInputError, match=r"curator\.model_version"):
        registry.register(linear_onnx(version="team/m1"))


def test_promotion_order_rollback_and_demotion(
    registry: ModelRegistry, model_v1: bytes, model_v2: bytes
) -> None:
    assert registry.latest_promoted() is None
    registry.register(model_v1)
    registry.register(model_v2)
    assert registry.latest_promoted() is None  # registered is not promoted
    assert registry.promote("m1").promoted
    assert registry.latest_promoted() == registry.get("m1")
    registry.promote("m2")
    assert registry.latest_promoted() == registry.get("m2")
    registry.promote("m1")  # a rollback: promoted last wins
    assert registry.latest_promoted() == registry.get("m1")
    assert registry.entry("m1").promotion_seq == 3
    registry.promote("m1")  # the current one: nothing changes
    assert registry.entry("m1").promotion_seq == 3
    assert not registry.demote("m1", reason="bad in the field").promoted
    assert registry.entry("m1").gate_reason == "bad in the field"
    assert registry.latest_promoted() == registry.get("m2")  # falls back
    registry.demote("m2")
    assert registry.latest_promoted() is None


def test_unknown_versions_are_not_found(registry: ModelRegistry) -> None:
    for call in (registry.get, registry.promote, registry.demote, registry.read_file):
        with pytest.raises(NotFound, match="'nope'"):
            call("nope")


def test_a_corrupted_file_is_not_served(
    registry: ModelRegistry, model_v1: bytes, tmp_path: Path
) -> None:
    registry.register(model_v1)
    key = registry.entry("m1").blob_key
    (tmp_path / "blobs" / key).write_bytes(model_v1[:-1] + b"\x00")
    with pytest.raises(Unavailable, match="corrupt"):
        registry.read_file("m1")
    (tmp_path / "blobs" / key).unlink()
    with pytest.raises(NotFound):
        registry.read_file("m1")


def test_warehouse_rows_follow_registration_and_promotion(
    registry: ModelRegistry, outbox: Outbox, sink: SqliteSink, model_v1: bytes
) -> None:
    info = registry.register(model_v1, snapshot_key="snap-1", metrics={"accuracy": 0.8})
    assert outbox.drain(sink) == 1
    (row,) = sink.read("model_versions")
    assert row["model_version"] == "m1" and row["sha256"] == info.sha256
    assert row["snapshot_key"] == "snap-1" and row["parent_version"] is None
    assert row["metrics"] == {"accuracy": 0.8}
    assert row["promoted"] is False
    assert row["created_at"] == info.created_at
    registry.promote("m1")
    registry.promote("m1")  # no change, no row
    assert outbox.pending() == 1
    outbox.drain(sink)
    (row,) = sink.read("model_versions")  # merged on model_version
    assert row["promoted"] is True


def test_a_failed_outbox_write_rolls_the_registration_back(
    registry: ModelRegistry, catalog: Catalog, model_v1: bytes, tmp_path: Path
) -> None:
    other = Outbox(tmp_path / "elsewhere.sqlite")  # not the catalog's file: enqueue refuses
    try:
        bad = ModelRegistry(catalog, registry.blobs, other)
        with pytest.raises(InvalidInputError, match="outbox file"):
            bad.register(model_v1)
    finally:
        other.close()
    assert count(catalog) == 0


def test_registry_shares_a_transaction(
    registry: ModelRegistry, catalog: Catalog, model_v1: bytes
) -> None:
    staged = registry.stage(model_v1)
    with pytest.raises(RuntimeError), catalog.atomic() as conn:
        registry.add(staged, conn=conn)
        registry.promote("m1", conn=conn)
        raise RuntimeError("the caller fails after")
    assert count(catalog) == 0


def test_registering_a_model_records_its_class_names_for_labelers(registry: Any) -> None:
    from server.labeling.classes import class_names

    registry.register(linear_onnx(version="lab-1", classes=3))
    with registry.catalog.db.atomic() as c:
        assert class_names(c, "lab-1") == ("class_0", "class_1", "class_2")
