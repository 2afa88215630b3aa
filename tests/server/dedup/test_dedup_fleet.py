"""FleetDedup's bookkeeping: one space per model version, idempotent accept, bad input, locks."""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np
import pytest

from curator.errors import InvalidInputError
from curator.index import BruteForceIndex, FaissIndex
from server.dedup import FleetDedup


def test_identical_vectors_of_two_model_versions_are_never_duplicates() -> None:
    dedup = FleetDedup()
    x = np.random.default_rng(0).standard_normal((5, 8)).astype(np.float32)
    dedup.accept("v1", [1, 2, 3, 4, 5], x)
    assert [d.duplicate_of_id for d in dedup.check("v1", x)] == [1, 2, 3, 4, 5]
    other = dedup.check("v2", x)
    assert [d.is_duplicate for d in other] == [False] * 5
    assert [d.similarity is None for d in other] == [True] + [False] * 4  # in-batch only
    dedup.accept("v2", [6, 7, 8, 9, 10], x)
    assert [d.duplicate_of_id for d in dedup.check("v2", x)] == [6, 7, 8, 9, 10]


def test_model_versions_may_have_different_dimensions() -> None:
    dedup = FleetDedup()
    dedup.accept("small", [1], np.ones((1, 4)))
    dedup.accept("large", [2], np.ones((1, 128)))
    assert dedup.stats()["model_versions"] == {
        "large": {"vectors": 1, "dim": 128, "watermark": 2},
        "small": {"vectors": 1, "dim": 4, "watermark": 1},
    }


def test_accept_is_idempotent_for_ids_already_present() -> None:
    dedup = FleetDedup()
    x = np.eye(4, dtype=np.float32)
    assert dedup.accept("v1", [1, 2], x[:2]) == 2
    assert dedup.accept("v1", [1, 2], x[:2]) == 0
    assert dedup.accept("v1", [2, 3], x[1:3]) == 1
    assert dedup.stats()["model_versions"]["v1"]["vectors"] == 3
    # a repeated id keeps its first vector
    assert dedup.accept("v1", [1], x[3:4]) == 0
    assert dedup.check("v1", x[:1])[0].duplicate_of_id == 1
    assert not dedup.check("v1", x[3:4])[0].is_duplicate


def test_an_embedding_dimension_other_than_the_versions_index_is_refused() -> None:
    dedup = FleetDedup()
    dedup.accept("v1", [1], np.ones((1, 8)))
    with pytest.raises(
        InvalidInputError, match="dimension 4 but model version 'v1' has dimension 8"
    ):
        dedup.accept("v1", [2], np.ones((1, 4)))
    with pytest.raises(InvalidInputError, match="dimension 4"):
        dedup.check("v1", np.ones((3, 4)))
    with pytest.raises(InvalidInputError, match="dimension 4"):
        dedup.accept("v1", [], np.ones((0, 4)))
    assert dedup.stats()["vectors"] == 1


@pytest.mark.parametrize(
    ("ids", "embeddings", "match"),
    [
        ([1, 2], np.ones((3, 4)), "1-D array of 3 integers"),
        ([[1, 2, 3]], np.ones((3, 4)), "1-D array of 3 integers"),
        ([1, 2, -3], np.ones((3, 4)), "non-negative"),
        ([1.0, 2.0, 3.0], np.ones((3, 4)), "non-negative int64"),
        ([1, 1, 2], np.ones((3, 4)), "unique"),
        ([1, 2, 3], np.ones(4), "2 dimensions"),
        ([1, 2, 3], np.full((3, 4), np.nan), "NaN"),
        ([1, 2, 3], np.zeros((3, 4)), "zero norm"),
        ([1, 2, 3], [["a"] * 4] * 3, "numeric"),
    ],
)
def test_malformed_ids_or_embeddings_are_refused(ids: Any, embeddings: Any, match: str) -> None:
    dedup = FleetDedup()
    with pytest.raises(InvalidInputError, match=match):
        dedup.accept("v1", ids, embeddings)
    with pytest.raises(InvalidInputError, match=match):
        dedup.check("v1", embeddings, ids=ids)
    assert dedup.stats()["vectors"] == 0


@pytest.mark.parametrize("version", ["", None, 3, b"v1"])
def test_a_model_version_must_be_a_non_empty_string(version: Any) -> None:
    dedup = FleetDedup()
    with pytest.raises(InvalidInputError, match="model_version"):
        dedup.check(version, np.ones((1, 2)))
    with pytest.raises(InvalidInputError, match="model_version"):
        dedup.accept(version, [1], np.ones((1, 2)))
    with pytest.raises(InvalidInputError, match="model_version"):
        dedup.lock(version)


def test_an_empty_batch_decides_nothing_and_creates_no_index() -> None:
    dedup = FleetDedup()
    assert dedup.check("v1", np.empty((0, 4))) == []
    assert dedup.accept("v1", [], np.empty((0, 4))) == 0
    assert dedup.stats() == {"threshold": 0.95, "vectors": 0, "model_versions": {}}


def test_the_index_factory_is_called_once_per_version_with_its_dimension() -> None:
    made: list[int] = []

    def factory(dim: int) -> BruteForceIndex:
        made.append(dim)
        return BruteForceIndex(dim)

    dedup = FleetDedup(index_factory=factory)
    dedup.accept("v1", [1], np.ones((1, 3)))
    dedup.accept("v1", [2], -np.ones((1, 3)))
    dedup.accept("v2", [3], np.ones((1, 5)))
    assert made == [3, 5]


def test_a_factory_that_makes_the_wrong_index_is_refused() -> None:
    dedup = FleetDedup(index_factory=lambda dim: FaissIndex(dim + 1))
    with pytest.raises(InvalidInputError, match="index_factory"):
        dedup.accept("v1", [1], np.ones((1, 3)))


def test_the_default_index_switches_to_hnsw_and_still_catches_re_uploads() -> None:
    dedup = FleetDedup(index_factory=lambda dim: FaissIndex(dim, hnsw_threshold=200))
    x = np.random.default_rng(3).standard_normal((500, 32)).astype(np.float32)
    dedup.accept("v1", np.arange(500), x)
    assert [d.duplicate_of_id for d in dedup.check("v1", x)] == list(range(500))


def test_an_id_below_the_watermark_is_accepted_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    dedup = FleetDedup()
    dedup.accept("v1", [10], np.ones((1, 2)))
    with caplog.at_level(logging.WARNING, logger="server.dedup"):
        assert dedup.accept("v1", [4], [[1.0, -1.0]]) == 1
    assert "below the watermark 10" in caplog.text
    assert dedup.stats()["model_versions"]["v1"]["watermark"] == 10


def test_the_lock_is_one_reentrant_lock_per_version() -> None:
    dedup = FleetDedup()
    lock = dedup.lock("v1")
    assert dedup.lock("v1") is lock and dedup.lock("v2") is not lock
    with lock, lock:  # re-entrant, and check/accept take it again inside
        dedup.check("v1", np.ones((1, 2)))
        dedup.accept("v1", [1], np.ones((1, 2)))
    acquired = threading.Event()

    def other_version() -> None:
        with dedup.lock("v2"):
            acquired.set()

    with lock:
        thread = threading.Thread(target=other_version)
        thread.start()
        assert acquired.wait(5)  # versions do not block each other
        thread.join()


def test_concurrent_ingest_under_the_lock_accepts_each_near_copy_once(catalog: Any) -> None:
    dedup = FleetDedup()
    x = np.random.default_rng(4).standard_normal((40, 16)).astype(np.float32)
    barrier = threading.Barrier(4)

    def device(seed: int) -> None:
        noisy = x + np.random.default_rng(seed).normal(0, 0.01, x.shape).astype(np.float32)
        barrier.wait()
        for start in range(0, 40, 8):
            catalog.ingest(dedup, "v1", noisy[start : start + 8])

    threads = [threading.Thread(target=device, args=(seed,)) for seed in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert dedup.stats()["vectors"] == len(catalog.frames["v1"]) == 40


def test_stats_and_repr() -> None:
    dedup = FleetDedup(0.9)
    dedup.accept("b", [3, 7], np.eye(2))
    dedup.check("a", np.eye(2))  # a version seen without accepted frames has no index
    assert dedup.stats() == {
        "threshold": 0.9,
        "vectors": 2,
        "model_versions": {"b": {"vectors": 2, "dim": 2, "watermark": 7}},
    }
    assert dedup.threshold == 0.9
    assert repr(dedup) == "FleetDedup(threshold=0.9, model_versions=['a', 'b'])"


def test_the_server_default_is_hnsw_and_finds_every_near_duplicate_brute_force_finds() -> None:
    rng = np.random.default_rng(5)
    centers = rng.standard_normal((50, 64))
    x = centers[rng.integers(0, 50, 3000)] + 0.3 * rng.standard_normal((3000, 64))
    dedup, oracle = FleetDedup(), FleetDedup(index_factory=BruteForceIndex)
    for lo in range(0, 3000, 64):  # grown batch by batch, as ingest does
        for d in (dedup, oracle):
            d.accept("v1", np.arange(lo, min(lo + 64, 3000)), x[lo : lo + 64])
    index = dedup._space("v1").index
    assert isinstance(index, FaissIndex) and index.structure == "hnsw"
    near = x[rng.integers(0, 3000, 500)] + 0.02 * rng.standard_normal((500, 64))
    found = [d.duplicate_of_id for d in dedup.check("v1", near)]
    expected = [d.duplicate_of_id for d in oracle.check("v1", near)]
    assert all(e is not None for e in expected)
    assert found == expected


def test_index_factory_kinds() -> None:
    from server.dedup import index_factory

    assert index_factory("flat")(8).structure == "flat"  # type: ignore[attr-defined]
    assert index_factory("auto", hnsw_threshold=5)(8).kind == "auto"  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="valid kinds"):
        index_factory("ivf")
