"""BruteForceIndex: the oracle, checked against hand-computed answers and full sorts."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from curator.errors import InvalidInputError
from curator.index import BruteForceIndex


def test_ties_are_broken_by_ascending_id_whatever_the_insertion_order() -> None:
    index = BruteForceIndex(2)
    a, b = [1.0, 0.0], [0.0, 1.0]
    index.add([10, 2], [a, a])
    index.add([4, 7, 3], [b, a, [2.0, 0.0]])  # [2, 0] normalises to exactly a
    sims, ids = index.search(np.array([a]), 3)
    np.testing.assert_array_equal(ids, [[2, 3, 7]])  # 10 is tied too but ranks after
    np.testing.assert_array_equal(sims, [[1.0, 1.0, 1.0]])
    _, ids = index.search(np.array([a]), 5)
    np.testing.assert_array_equal(ids, [[2, 3, 7, 10, 4]])


def test_many_exact_duplicates_rank_by_id_across_blas_blocks() -> None:
    rng = np.random.default_rng(0)
    pool = rng.standard_normal((3, 16))
    which = rng.integers(3, size=2000)
    ids = rng.permutation(10**6)[:2000]
    index = BruteForceIndex(16)
    index.add(ids, pool[which])
    _, found = index.search(pool, 50)
    for j in range(3):
        np.testing.assert_array_equal(found[j], np.sort(ids[which == j])[:50])


def test_matches_a_float64_full_sort() -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((500, 12))
    q = rng.standard_normal((40, 12))
    ids = rng.choice(2**50, size=500, replace=False)
    index = BruteForceIndex(12)
    index.add(ids, x)
    sims, found = index.search(q, 8)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    want = qn @ xn.T
    order = np.argsort(-want, axis=1)[:, :8]
    np.testing.assert_array_equal(found, ids[order])
    np.testing.assert_allclose(sims, np.take_along_axis(want, order, 1), atol=1e-6)


def test_search_in_chunks_gives_the_same_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(2)
    index = BruteForceIndex(4)
    index.add(np.arange(100), rng.standard_normal((100, 4)))
    q = rng.standard_normal((33, 4))
    whole_sims, whole_ids = index.search(q, 5)
    monkeypatch.setattr("curator.index.brute._CHUNK_ELEMENTS", 250)  # 2 queries per chunk
    sims, ids = index.search(q, 5)
    np.testing.assert_array_equal(ids, whole_ids)
    # BLAS may round the last bit differently for another batch shape
    np.testing.assert_allclose(sims, whole_sims, rtol=0, atol=1e-6)


@pytest.mark.parametrize("dim", [0, -1, 2.5, True, "8"])
def test_dimension_must_be_a_positive_integer(dim: object) -> None:
    with pytest.raises(InvalidInputError, match="dim"):
        BruteForceIndex(dim)  # type: ignore[arg-type]


@settings(max_examples=40, deadline=None)
@given(
    data=st.data(),
    n=st.integers(1, 25),
    dim=st.integers(1, 5),
    k=st.integers(1, 30),
)
def test_top_k_is_the_sorted_prefix_by_similarity_then_id(
    data: st.DataObject, n: int, dim: int, k: int
) -> None:
    # small integer vectors give many exact ties
    rows = st.lists(st.integers(-2, 2), min_size=dim, max_size=dim).filter(any)
    x = np.array(data.draw(st.lists(rows, min_size=n, max_size=n)), np.float64)
    ids = np.array(data.draw(st.lists(st.integers(0, 2**62), min_size=n, max_size=n, unique=True)))
    q = np.array([data.draw(rows)], np.float64)
    index = BruteForceIndex(dim)
    index.add(ids, x)
    sims, found = index.search(q, k)
    # the reference: the index's own float32 similarities, fully sorted by (-sim, id)
    all_sims, all_ids = index.search(q, n)
    by_id = dict(zip(all_ids[0].tolist(), all_sims[0].tolist(), strict=True))
    order = sorted(by_id, key=lambda i: (-by_id[i], i))
    assert found[0, : min(k, n)].tolist() == order[:k]
    assert (found[0, n:] == -1).all() and np.isneginf(sims[0, n:]).all()
    expected = np.sort((x / np.linalg.norm(x, axis=1, keepdims=True)) @ (q[0] / np.linalg.norm(q)))
    np.testing.assert_allclose(sims[0, : min(k, n)], expected[::-1][:k], atol=1e-6)
