"""Snapshot and restore: the restored indexes hold exactly the catalog's accepted frames."""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from curator.errors import InvalidInputError
from curator.index import BruteForceIndex
from server.dedup import MANIFEST_NAME, NO_WATERMARK, FleetDedup
from server.dedup import fleet as fleet_module

Check = Callable[[FleetDedup, Any], None]


def fill(
    dedup: FleetDedup,
    catalog: Any,
    rng: np.random.Generator,
    versions: dict[str, int],
    batches: int = 3,
) -> None:
    """Ingest ``batches`` batches of random frames (some near copies) for each version."""
    for _ in range(batches):
        for mv, dim in versions.items():
            x = rng.standard_normal((20, dim)).astype(np.float32)
            x[15:] = x[:5] + rng.normal(0, 0.01, (5, dim))  # near copies within the batch
            catalog.ingest(dedup, mv, x)


VERSIONS = {"fmnist@1": 16, "fmnist/2 (new model)": 8}


def index_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".index"))


def test_round_trip_then_catch_up_of_frames_accepted_after_the_snapshot(
    tmp_path: Path, catalog: Any, assert_holds_exactly: Check
) -> None:
    rng = np.random.default_rng(0)
    dedup = FleetDedup(0.95)
    fill(dedup, catalog, rng, VERSIONS)
    saved = dedup.snapshot(tmp_path)
    assert saved == {mv: catalog.frames[mv][-1][0] for mv in VERSIONS}
    fill(dedup, catalog, rng, VERSIONS, batches=2)  # after the snapshot, then a crash

    restored = FleetDedup.restore(tmp_path, catalog.catch_up, threshold=0.95)
    assert sorted(catalog.catch_up_calls) == sorted(saved.items())
    assert_holds_exactly(restored, catalog)
    assert restored.stats() == dedup.stats()
    probe = rng.standard_normal((30, 16)).astype(np.float32)
    probe[10:] = np.stack([row for _, row in catalog.frames["fmnist@1"][:20]])
    assert restored.check("fmnist@1", probe) == dedup.check("fmnist@1", probe)


def test_restore_with_nothing_new_calls_catch_up_at_the_watermarks(
    tmp_path: Path, catalog: Any, assert_holds_exactly: Check
) -> None:
    dedup = FleetDedup()
    fill(dedup, catalog, np.random.default_rng(1), VERSIONS)
    saved = dedup.snapshot(tmp_path)
    restored = FleetDedup.restore(tmp_path, catalog.catch_up)
    assert dict(catalog.catch_up_calls) == saved
    assert_holds_exactly(restored, catalog)


@pytest.mark.parametrize("listing", ["iterable", "callable"])
def test_versions_first_seen_after_the_snapshot_are_caught_up_in_full(
    tmp_path: Path, catalog: Any, assert_holds_exactly: Check, listing: str
) -> None:
    rng = np.random.default_rng(2)
    dedup = FleetDedup()
    fill(dedup, catalog, rng, {"old": 8})
    dedup.snapshot(tmp_path)
    fill(dedup, catalog, rng, {"new": 4})
    versions = catalog.versions if listing == "callable" else catalog.versions()
    restored = FleetDedup.restore(tmp_path, catalog.catch_up, model_versions=versions)
    assert ("new", NO_WATERMARK) in catalog.catch_up_calls
    assert_holds_exactly(restored, catalog)


def test_a_missing_snapshot_starts_empty_with_a_warning_and_catches_up_everything(
    tmp_path: Path, catalog: Any, assert_holds_exactly: Check, caplog: pytest.LogCaptureFixture
) -> None:
    fill(FleetDedup(), catalog, np.random.default_rng(3), VERSIONS)
    with caplog.at_level(logging.WARNING, logger="server.dedup"):
        restored = FleetDedup.restore(
            tmp_path / "never-written", catalog.catch_up, model_versions=catalog.versions()
        )
    assert "no dedup snapshot" in caplog.text
    assert sorted(catalog.catch_up_calls) == [(mv, NO_WATERMARK) for mv in sorted(VERSIONS)]
    assert_holds_exactly(restored, catalog)


@pytest.mark.parametrize(
    "damage",
    [
        b"",
        b"\x00\xff garbage",
        b'{"format": "something else", "versions": {}}',
        b'{"format": "curator.server.dedup/1"}',
        b'{"format": "curator.server.dedup/1", "versions": {"v": {"file": "../../etc/passwd",'
        b' "watermark": 1, "vectors": 1, "dim": 2}}}',
        b'{"format": "curator.server.dedup/1", "versions": {"v": {"file": '
        b'"0123456789abcdef-1-1.index", "watermark": "1", "vectors": 1, "dim": 2}}}',
        b"[1, 2, 3]",
    ],
)
def test_a_corrupt_manifest_falls_back_to_a_full_catch_up(
    tmp_path: Path,
    catalog: Any,
    assert_holds_exactly: Check,
    caplog: pytest.LogCaptureFixture,
    damage: bytes,
) -> None:
    dedup = FleetDedup()
    fill(dedup, catalog, np.random.default_rng(4), VERSIONS)
    dedup.snapshot(tmp_path)
    (tmp_path / MANIFEST_NAME).write_bytes(damage)
    with caplog.at_level(logging.WARNING, logger="server.dedup"):
        restored = FleetDedup.restore(tmp_path, catalog.catch_up, model_versions=catalog.versions)
    assert "unusable" in caplog.text
    assert {w for _, w in catalog.catch_up_calls} == {NO_WATERMARK}
    assert_holds_exactly(restored, catalog)


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete", "wrong-count", "swap"])
def test_an_unusable_index_file_rebuilds_only_its_version(
    tmp_path: Path,
    catalog: Any,
    assert_holds_exactly: Check,
    caplog: pytest.LogCaptureFixture,
    damage: str,
) -> None:
    dedup = FleetDedup()
    fill(dedup, catalog, np.random.default_rng(5), VERSIONS)
    saved = dedup.snapshot(tmp_path)
    manifest = json.loads((tmp_path / MANIFEST_NAME).read_text())
    bad, good = "fmnist@1", "fmnist/2 (new model)"
    path = tmp_path / manifest["versions"][bad]["file"]
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        path.write_bytes(data[:10] + bytes([data[10] ^ 0xFF]) + data[11:])
    elif damage == "delete":
        path.unlink()
    elif damage == "wrong-count":
        manifest["versions"][bad]["vectors"] += 1
        (tmp_path / MANIFEST_NAME).write_text(json.dumps(manifest))
    else:  # the other version's file: another dimension
        shutil.copy(tmp_path / manifest["versions"][good]["file"], path)
    with caplog.at_level(logging.WARNING, logger="server.dedup"):
        restored = FleetDedup.restore(tmp_path, catalog.catch_up)
    assert f"snapshot of {bad!r} is unusable" in caplog.text
    assert sorted(catalog.catch_up_calls) == sorted([(bad, NO_WATERMARK), (good, saved[good])])
    assert_holds_exactly(restored, catalog)


def test_a_snapshot_that_disagrees_with_the_catalog_is_rebuilt(
    tmp_path: Path, catalog: Any, assert_holds_exactly: Check, caplog: pytest.LogCaptureFixture
) -> None:
    dedup = FleetDedup()
    dedup.accept("v1", [1], np.ones((1, 3)))  # an index of dimension 3 for a version ...
    dedup.snapshot(tmp_path)
    fill(FleetDedup(), catalog, np.random.default_rng(6), {"v1": 8})  # ... the catalog says 8
    with caplog.at_level(logging.WARNING, logger="server.dedup"):
        restored = FleetDedup.restore(tmp_path, catalog.catch_up)
    assert "disagrees with the catalog" in caplog.text
    assert_holds_exactly(restored, catalog)


def test_malformed_catalog_frames_are_an_error(tmp_path: Path) -> None:
    def bad_catch_up(model_version: str, watermark: int) -> list[tuple[int, Any]]:
        return [(1, [1.0, 0.0]), (2, [1.0, 0.0, 0.0])]

    with pytest.raises(InvalidInputError):
        FleetDedup.restore(tmp_path, bad_catch_up, model_versions=["v1"])


def test_a_crash_after_the_index_files_and_before_the_manifest_keeps_the_old_snapshot(
    tmp_path: Path, catalog: Any, assert_holds_exactly: Check, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(7)
    dedup = FleetDedup()
    fill(dedup, catalog, rng, VERSIONS)
    first = dedup.snapshot(tmp_path)
    old_files = index_files(tmp_path)
    fill(dedup, catalog, rng, VERSIONS)

    def killed(*args: Any) -> None:
        raise KeyboardInterrupt("killed between the index files and the manifest")

    monkeypatch.setattr(fleet_module, "write_manifest", killed)
    with pytest.raises(KeyboardInterrupt):
        dedup.snapshot(tmp_path)
    monkeypatch.undo()
    assert set(old_files) < set(index_files(tmp_path))  # new files written, old ones kept
    restored = FleetDedup.restore(tmp_path, catalog.catch_up)
    assert dict(catalog.catch_up_calls) == first
    assert_holds_exactly(restored, catalog)


def test_a_crash_after_the_manifest_and_before_the_clean_up_is_harmless(
    tmp_path: Path, catalog: Any, assert_holds_exactly: Check, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(8)
    dedup = FleetDedup()
    fill(dedup, catalog, rng, VERSIONS)
    dedup.snapshot(tmp_path)
    fill(dedup, catalog, rng, VERSIONS)
    monkeypatch.setattr(fleet_module, "remove_unnamed_files", lambda *a: None)
    second = dedup.snapshot(tmp_path)
    monkeypatch.undo()
    assert len(index_files(tmp_path)) == 4
    restored = FleetDedup.restore(tmp_path, catalog.catch_up)
    assert dict(catalog.catch_up_calls) == second
    assert_holds_exactly(restored, catalog)
    restored.snapshot(tmp_path)  # the next snapshot removes the stale files
    assert len(index_files(tmp_path)) == 2


def test_leftover_temp_files_are_ignored_and_cleaned_up(
    tmp_path: Path, catalog: Any, assert_holds_exactly: Check
) -> None:
    dedup = FleetDedup()
    fill(dedup, catalog, np.random.default_rng(9), VERSIONS)
    dedup.snapshot(tmp_path)
    torn_manifest = tmp_path / f".{MANIFEST_NAME}.x1y2z3.tmp"
    torn_manifest.write_bytes(b'{"format": "curator.ser')
    torn_index = tmp_path / ".0123456789abcdef-99-3.index.a1b2.tmp"
    torn_index.write_bytes(b"CURATOR-FAISS")
    unrelated = tmp_path / "notes.txt"
    unrelated.write_text("keep me")
    assert_holds_exactly(FleetDedup.restore(tmp_path, catalog.catch_up), catalog)
    dedup.snapshot(tmp_path)
    assert not torn_manifest.exists() and not torn_index.exists() and unrelated.exists()


def test_an_unchanged_index_is_not_written_again(tmp_path: Path, catalog: Any) -> None:
    rng = np.random.default_rng(10)
    dedup = FleetDedup()
    fill(dedup, catalog, rng, VERSIONS)
    dedup.snapshot(tmp_path)
    before = {name: os.stat(tmp_path / name).st_ino for name in index_files(tmp_path)}
    fill(dedup, catalog, rng, {"fmnist@1": 16})  # only one version changes
    dedup.snapshot(tmp_path)
    after = {name: os.stat(tmp_path / name).st_ino for name in index_files(tmp_path)}
    kept = set(before) & set(after)
    assert len(kept) == 1 and all(before[n] == after[n] for n in kept)
    assert len(after) == 2


def test_snapshot_of_nothing_and_a_version_without_an_index(tmp_path: Path) -> None:
    dedup = FleetDedup()
    dedup.check("seen-only", np.eye(2))
    assert dedup.snapshot(tmp_path) == {}
    manifest = json.loads((tmp_path / MANIFEST_NAME).read_text())
    assert manifest == {"format": "curator.server.dedup/1", "versions": {}}
    assert FleetDedup.restore(tmp_path, lambda mv, w: []).stats()["vectors"] == 0


def test_restore_keeps_the_index_settings_and_takes_the_threshold(
    tmp_path: Path, catalog: Any, assert_holds_exactly: Check
) -> None:
    dedup = FleetDedup(0.9, index_factory=BruteForceIndex)
    fill(dedup, catalog, np.random.default_rng(11), {"v1": 8})
    dedup.snapshot(tmp_path)
    restored = FleetDedup.restore(tmp_path, catalog.catch_up, threshold=0.9)
    assert restored.threshold == 0.9
    assert_holds_exactly(restored, catalog)
    assert isinstance(restored._spaces["v1"].index, BruteForceIndex)
