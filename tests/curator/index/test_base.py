"""The VectorIndex contract, run against every implementation (see conftest.IMPLEMENTATIONS)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from curator.errors import InvalidInputError
from curator.index import BruteForceIndex, FaissIndex, VectorIndex

DIM = 8
BIG = 2**40

IndexFactory = Callable[[int], VectorIndex]


def unit_vectors(n: int, dim: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def filled(make_index: IndexFactory, n: int = 60, seed: int = 0) -> tuple[VectorIndex, np.ndarray]:
    index = make_index(DIM)
    x = unit_vectors(n, DIM, seed)
    index.add(np.arange(n) + BIG, x)
    return index, x


class TestVectorIndexContract:
    def test_empty_index_pads_every_row(self, make_index: IndexFactory) -> None:
        index = make_index(DIM)
        sims, ids = index.search(unit_vectors(3, DIM), 4)
        assert index.dim == DIM and len(index) == 0
        assert sims.shape == ids.shape == (3, 4)
        assert sims.dtype == np.float32 and ids.dtype == np.int64
        assert np.isneginf(sims).all() and (ids == -1).all()
        assert index.remove([1, 2]) == 0
        assert 1 not in index

    def test_search_finds_each_vector_first_with_similarity_one(
        self, make_index: IndexFactory
    ) -> None:
        index, x = filled(make_index)
        sims, ids = index.search(x, 5)
        np.testing.assert_array_equal(ids[:, 0], np.arange(60) + BIG)
        np.testing.assert_allclose(sims[:, 0], 1.0, atol=1e-5)
        assert (np.diff(sims, axis=1) <= 0).all()
        assert sims.max() <= 1.0

    def test_similarities_are_cosines_of_unnormalised_input(self, make_index: IndexFactory) -> None:
        index = make_index(2)
        index.add([7, 8, 9], np.array([[3.0, 0.0], [1.0, 1.0], [-5.0, 0.0]]))
        sims, ids = index.search(np.array([[10.0, 0.0]]), 3)
        np.testing.assert_array_equal(ids, [[7, 8, 9]])
        np.testing.assert_allclose(sims, [[1.0, np.sqrt(0.5), -1.0]], atol=1e-6)

    def test_fewer_vectors_than_k_pads_the_tail(self, make_index: IndexFactory) -> None:
        index = make_index(DIM)
        x = unit_vectors(3, DIM)
        index.add([5, 6, 7], x)
        sims, ids = index.search(x[:2], 5)
        assert sorted(ids[0, :3]) == [5, 6, 7]
        assert (ids[:, 3:] == -1).all() and np.isneginf(sims[:, 3:]).all()
        assert np.isfinite(sims[:, :3]).all()

    def test_len_and_contains(self, make_index: IndexFactory) -> None:
        index, _ = filled(make_index, 50)
        assert len(index) == 50
        assert BIG in index and np.int64(BIG + 49) in index and index.contains(BIG + 1)
        for absent in (0, BIG + 50, -1, 2**70, "x", 1.0 * BIG, None):
            assert absent not in index

    def test_remove_counts_only_stored_ids_and_they_never_come_back(
        self, make_index: IndexFactory
    ) -> None:
        index, x = filled(make_index)
        gone = np.arange(0, 60, 2) + BIG
        assert index.remove(np.concatenate([gone, gone[:3], [1, 2]])) == 30
        assert len(index) == 30 and BIG not in index and BIG + 1 in index
        assert index.remove(gone) == 0
        _, ids = index.search(x, 30)
        assert not np.isin(ids, gone).any()
        assert set(ids[ids >= 0].tolist()) == set((np.arange(1, 60, 2) + BIG).tolist())

    def test_removed_id_can_be_added_again(self, make_index: IndexFactory) -> None:
        index, x = filled(make_index, 10)
        index.remove([BIG])
        index.add([BIG], -x[:1])
        sims, ids = index.search(-x[:1], 1)
        assert ids[0, 0] == BIG and sims[0, 0] == pytest.approx(1.0, abs=1e-5)

    def test_adding_a_stored_id_raises_and_changes_nothing(self, make_index: IndexFactory) -> None:
        index, x = filled(make_index, 10)
        with pytest.raises(InvalidInputError, match="already stored"):
            index.add([BIG + 99, BIG + 3], x[:2])
        assert len(index) == 10 and BIG + 99 not in index

    def test_ids_above_2_to_the_40_round_trip(self, make_index: IndexFactory) -> None:
        index = make_index(DIM)
        ids = np.array([2**40 + 1, 2**53 + 1, 2**63 - 1, 0], np.int64)
        x = unit_vectors(4, DIM)
        index.add(ids.astype(np.uint64), x)
        _, found = index.search(x, 1)
        np.testing.assert_array_equal(found[:, 0], ids)
        assert 2**63 - 1 in index and index.remove([2**53 + 1]) == 1

    @pytest.mark.parametrize(
        ("ids", "vectors", "message"),
        [
            ([1, 2], [[np.nan] * DIM, [1.0] * DIM], "NaN or inf"),
            ([1], [[np.inf] + [0.0] * (DIM - 1)], "NaN or inf"),
            ([1], np.ones((1, DIM + 1)), f"dimension {DIM + 1} but the index has dimension {DIM}"),
            ([1], np.ones(DIM), "2 dimensions"),
            ([1], [["a"] * DIM], "numeric"),
            ([1, 1], np.ones((2, DIM)), "unique"),
            ([1.0, 2.0], np.ones((2, DIM)), "integers"),
            (["a"], np.ones((1, DIM)), "integers"),
            ([True], np.ones((1, DIM)), "integers"),
            ([-3], np.ones((1, DIM)), "non-negative"),
            ([[1]], np.ones((1, DIM)), "1-D"),
            ([1, 2], np.ones((1, DIM)), "one id per vector"),
            ([1], np.zeros((1, DIM)), "zero norm"),
            (np.array([2**64 - 1], np.uint64), np.ones((1, DIM)), "int64"),
        ],
    )
    def test_bad_add_raises_and_changes_nothing(
        self, make_index: IndexFactory, ids: object, vectors: object, message: str
    ) -> None:
        index, _ = filled(make_index, 5)
        with pytest.raises(InvalidInputError, match=message):
            index.add(ids, vectors)
        assert len(index) == 5 and 1 not in index

    @pytest.mark.parametrize(
        ("queries", "k", "message"),
        [
            (np.ones((1, DIM)), 0, "positive integer"),
            (np.ones((1, DIM)), -2, "positive integer"),
            (np.ones((1, DIM)), 1.5, "positive integer"),
            (np.ones((1, DIM)), True, "positive integer"),
            (np.ones((2, 3)), 1, f"dimension 3 but the index has dimension {DIM}"),
            (np.ones(DIM), 1, "2 dimensions"),
            ([[np.nan] * DIM], 1, "NaN or inf"),
            ([["x"] * DIM], 1, "numeric"),
            (np.zeros((1, DIM)), 1, "zero norm"),
        ],
    )
    def test_bad_search_raises(
        self, make_index: IndexFactory, queries: object, k: object, message: str
    ) -> None:
        index, _ = filled(make_index, 5)
        with pytest.raises(InvalidInputError, match=message):
            index.search(queries, k)  # type: ignore[arg-type]

    @pytest.mark.parametrize("ids", [[1.5], ["a"], [[1]], [-1]])
    def test_bad_remove_raises(self, make_index: IndexFactory, ids: object) -> None:
        index, _ = filled(make_index, 5)
        with pytest.raises(InvalidInputError):
            index.remove(ids)
        assert len(index) == 5

    def test_empty_calls_are_no_ops(self, make_index: IndexFactory) -> None:
        index, _ = filled(make_index, 5)
        index.add([], np.empty((0, DIM)))
        assert index.remove([]) == 0 and len(index) == 5
        sims, ids = index.search(np.empty((0, DIM)), 3)
        assert sims.shape == ids.shape == (0, 3)

    def test_save_then_load_gives_identical_results(
        self, make_index: IndexFactory, tmp_path: Path
    ) -> None:
        index, x = filled(make_index)
        index.remove(np.arange(0, 60, 3) + BIG)
        path = tmp_path / "index.bin"
        index.save(path)
        loaded = type(index).load(path)
        assert isinstance(loaded, VectorIndex)
        assert loaded.dim == DIM and len(loaded) == len(index) == 40
        assert BIG not in loaded and BIG + 1 in loaded
        for got, want in zip(loaded.search(x, 7), index.search(x, 7), strict=True):
            np.testing.assert_array_equal(got, want)
        loaded.add([1], x[:1])
        assert len(loaded) == 41 and len(index) == 40
        assert [p.name for p in tmp_path.iterdir()] == ["index.bin"]  # no temp file left

    def test_save_overwrites_an_existing_file(
        self, make_index: IndexFactory, tmp_path: Path
    ) -> None:
        path = tmp_path / "index.bin"
        index, _ = filled(make_index, 10)
        index.save(path)
        index.remove([BIG])
        index.save(path)
        assert len(type(index).load(path)) == 9

    def test_load_rejects_missing_and_foreign_files(
        self, make_index: IndexFactory, tmp_path: Path
    ) -> None:
        cls = type(make_index(DIM))
        with pytest.raises(InvalidInputError, match="cannot read"):
            cls.load(tmp_path / "missing.bin")
        (tmp_path / "junk.bin").write_bytes(b"not an index at all")
        with pytest.raises(InvalidInputError, match="not a saved"):
            cls.load(tmp_path / "junk.bin")
        other = FaissIndex(DIM, kind="flat") if cls is BruteForceIndex else BruteForceIndex(DIM)
        other.save(tmp_path / "other.bin")
        with pytest.raises(InvalidInputError, match="not a saved"):
            cls.load(tmp_path / "other.bin")

    @settings(
        max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(
        ops=st.lists(
            st.tuples(st.booleans(), st.lists(st.integers(0, 40), max_size=12, unique=True)),
            max_size=12,
        )
    )
    def test_any_sequence_of_adds_and_removes_matches_a_set(
        self, make_index: IndexFactory, ops: list[tuple[bool, list[int]]]
    ) -> None:
        index = make_index(DIM)
        vectors = unit_vectors(41, DIM, seed=1)
        stored: set[int] = set()
        for is_add, ids in ops:
            if is_add:
                new = [i for i in ids if i not in stored]
                index.add(new, vectors[new])
                stored.update(new)
            else:
                assert index.remove(ids) == len(stored & set(ids))
                stored -= set(ids)
            assert len(index) == len(stored)
        assert all((i in index) == (i in stored) for i in range(41))
        _, found = index.search(vectors, 41)
        assert set(found[found >= 0].tolist()) <= stored
        if stored:  # every stored vector finds itself first
            rows = sorted(stored)
            np.testing.assert_array_equal(found[rows, 0], rows)
