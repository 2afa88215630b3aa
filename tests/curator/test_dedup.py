from __future__ import annotations

import hashlib

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from curator.dedup import (
    exact_groups,
    near_duplicate_groups,
    representatives,
    sha256_hex,
)
from curator.diversity import l2_normalize
from curator.errors import InvalidInputError

embeddings = arrays(
    np.float32,
    st.tuples(st.integers(1, 25), st.integers(2, 4)),
    elements=st.floats(-1, 1, allow_nan=False, width=32),
)


def _oracle_components(x: np.ndarray, threshold: float) -> set[frozenset[int]]:
    """Connected components by depth-first search over the float64 similarity matrix."""
    xn = l2_normalize(x).astype(np.float64)
    adj = xn @ xn.T >= threshold
    seen: set[int] = set()
    comps = set()
    for start in range(len(x)):
        if start in seen:
            continue
        stack, comp = [start], set()
        while stack:
            i = stack.pop()
            if i in comp:
                continue
            comp.add(i)
            stack.extend(int(j) for j in np.flatnonzero(adj[i]) if j not in comp)
        seen |= comp
        comps.add(frozenset(comp))
    return comps


def _far_from_threshold(x: np.ndarray, threshold: float) -> bool:
    xn = l2_normalize(x).astype(np.float64)
    return bool((np.abs(xn @ xn.T - threshold) > 1e-4).all())


def test_sha256_hex() -> None:
    assert sha256_hex(b"frame") == hashlib.sha256(b"frame").hexdigest()


def test_exact_groups_pick_the_most_valuable_copy() -> None:
    groups = exact_groups([b"a", b"b", b"a", b"a"], values=[0.1, 0.9, 0.5, 0.5])
    assert [(g.representative, g.members) for g in groups] == [(2, (0, 2, 3)), (1, (1,))]
    assert groups[0].duplicates == (0, 3)
    assert exact_groups([sha256_hex(b"a"), sha256_hex(b"a")])[0].members == (0, 1)


@given(embeddings, st.floats(0.5, 0.99))
def test_near_duplicate_groups_match_the_oracle(x: np.ndarray, threshold: float) -> None:
    assume(_far_from_threshold(x, threshold))
    got = {frozenset(g.members) for g in near_duplicate_groups(x, threshold)}
    assert got == _oracle_components(x, threshold)


@given(embeddings, st.floats(0.5, 0.99), st.randoms())
def test_grouping_is_symmetric_under_reordering(x: np.ndarray, threshold: float, r) -> None:
    assume(_far_from_threshold(x, threshold))
    perm = list(range(len(x)))
    r.shuffle(perm)
    before = {frozenset(g.members) for g in near_duplicate_groups(x, threshold)}
    after = {
        frozenset(perm[m] for m in g.members) for g in near_duplicate_groups(x[perm], threshold)
    }
    assert before == after


@given(embeddings, st.floats(0.5, 0.99))
def test_grouping_is_idempotent(x: np.ndarray, threshold: float) -> None:
    assume(_far_from_threshold(x, threshold))
    reps = representatives(near_duplicate_groups(x, threshold))
    again = near_duplicate_groups(x[reps], threshold)
    assert all(len(g.members) == 1 for g in again)


def test_representative_has_the_highest_value_then_lowest_index() -> None:
    x = np.array([[1.0, 0.0], [1.0, 0.01], [1.0, -0.01], [0.0, 1.0]])
    groups = near_duplicate_groups(x, 0.99, values=[0.2, 0.7, 0.7, 0.0])
    assert [(g.representative, g.members) for g in groups] == [(1, (0, 1, 2)), (3, (3,))]


def test_transitive_chain_forms_one_group() -> None:
    angles = np.radians([0, 5, 10, 15])  # neighbours at cos(5 deg) ~ 0.996, ends at ~0.966
    x = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    assert [g.members for g in near_duplicate_groups(x, 0.99)] == [(0, 1, 2, 3)]


def test_bad_input() -> None:
    with pytest.raises(InvalidInputError, match="threshold"):
        near_duplicate_groups(np.ones((2, 2)), 1.5)
    with pytest.raises(InvalidInputError, match="NaN"):
        near_duplicate_groups(np.array([[np.nan, 1.0]]), 0.9)
    with pytest.raises(InvalidInputError, match="values has 1 entries for 2 frames"):
        near_duplicate_groups(np.ones((2, 2)), 0.9, values=[1.0])


def test_empty_input_gives_no_groups() -> None:
    assert near_duplicate_groups(np.zeros((0, 4)), 0.9) == []
    assert exact_groups([]) == []


def test_identical_embeddings_group_even_at_threshold_one() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(5, 7))
    groups = near_duplicate_groups(np.vstack([x, x]), 1.0)
    assert sorted(g.members for g in groups) == [(i, i + 5) for i in range(5)]


def test_extreme_magnitudes_still_group() -> None:
    for scale in (1e-20, 1e19):
        x = np.full((2, 2), scale)
        assert [g.members for g in near_duplicate_groups(x, 0.99)] == [(0, 1)]
