"""RecentEmbeddings against brute force (curator.diversity.max_similarity), exact and IVF."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from curator.diversity import max_similarity
from curator.errors import InvalidInputError
from edge_selector.novelty import RecentEmbeddings

CAPACITY = 2000
TRAIN = 400  # 400 // 39 = 10 inverted lists once indexed
DIM = 16


def clustered(
    rng: np.random.Generator, n: int, centers: int = 12, spread: float = 0.15
) -> np.ndarray:
    """``n`` vectors around ``centers`` random directions (the shape of real embeddings)."""
    c = rng.standard_normal((centers, DIM)).astype(np.float32)
    pick = rng.integers(0, centers, n)
    return (c[pick] + spread * rng.standard_normal((n, DIM))).astype(np.float32)


def brute(queries: np.ndarray, held: np.ndarray) -> np.ndarray:
    sim, _ = max_similarity(queries, held)
    return sim


def feed(recent: RecentEmbeddings, vectors: np.ndarray, chunks: list[int]) -> None:
    start = 0
    for size in chunks:
        recent.add(vectors[start : start + size])
        start += size
    recent.add(vectors[start:])


def test_empty_set_novelty_is_one_and_similarity_minus_inf() -> None:
    recent = RecentEmbeddings(CAPACITY, train_size=TRAIN)
    q = np.random.default_rng(0).standard_normal((5, DIM))
    assert len(recent) == 0
    np.testing.assert_array_equal(recent.novelty(q), np.ones(5, np.float32))
    assert np.isneginf(recent.similarity(q)).all()
    assert recent.novelty(np.empty((0, DIM))).shape == (0,)


def test_exact_phase_equals_brute_force() -> None:
    rng = np.random.default_rng(1)
    x = clustered(rng, TRAIN - 1)
    recent = RecentEmbeddings(CAPACITY, train_size=TRAIN)
    feed(recent, x, [1, 7, 50, 100])
    assert not recent.indexed and len(recent) == TRAIN - 1
    q = np.concatenate([clustered(rng, 200), x[:20] * 3.0])  # scale does not matter
    np.testing.assert_allclose(recent.similarity(q), brute(q, x), atol=1e-5)
    np.testing.assert_allclose(recent.novelty(q), 1.0 - brute(q, x), atol=1e-5)
    np.testing.assert_allclose(recent.similarity(x[:20]), 1.0, atol=1e-5)


def test_switches_to_ivf_at_train_size() -> None:
    rng = np.random.default_rng(2)
    recent = RecentEmbeddings(CAPACITY, train_size=TRAIN)
    recent.add(clustered(rng, TRAIN - 1))
    assert not recent.indexed
    recent.add(clustered(rng, 1))
    assert recent.indexed and len(recent) == TRAIN


@pytest.mark.parametrize("total", [TRAIN, 1500, CAPACITY + 1, 5 * CAPACITY + 17])
def test_ivf_probing_every_list_equals_brute_force_over_the_newest(total: int) -> None:
    """With nprobe >= nlist the index is exhaustive: it must equal brute force over exactly the
    vectors the ring holds (the newest ``len(recent)``), through drops of the oldest block."""
    rng = np.random.default_rng(total)
    x = clustered(rng, total)
    recent = RecentEmbeddings(CAPACITY, nprobe=64, train_size=TRAIN)
    feed(recent, x, [TRAIN // 2, TRAIN, 333] * 3)
    assert recent.indexed
    held = x[total - len(recent) :]
    q = np.concatenate([clustered(rng, 300), held[:25], x[: max(0, total - len(recent))][:25]])
    np.testing.assert_allclose(recent.similarity(q), brute(q, held), atol=1e-5)
    np.testing.assert_allclose(recent.novelty(q), 1.0 - brute(q, held), atol=1e-5)


def test_ivf_default_nprobe_never_overestimates_and_finds_near_duplicates_exactly() -> None:
    rng = np.random.default_rng(3)
    x = clustered(rng, 3 * CAPACITY, centers=40)
    recent = RecentEmbeddings(CAPACITY, train_size=TRAIN)  # 8 of 10 lists probed
    feed(recent, x, [TRAIN, 1000, 1])
    assert recent.indexed
    held = x[-len(recent) :]
    q = clustered(rng, 500, centers=40)
    got, want = recent.similarity(q), brute(q, held)
    assert (got <= want + 1e-5).all()  # a real neighbour's similarity, never more
    # near-duplicates of held vectors (cos > 0.95) are found with their exact similarity
    base = held[rng.choice(len(held), 300, replace=False)]
    noisy = base + 0.02 * np.linalg.norm(base, axis=1, keepdims=True) * rng.standard_normal(
        base.shape
    ).astype(np.float32)
    want = brute(noisy, held)
    assert (want > 0.95).all()
    np.testing.assert_allclose(recent.similarity(noisy), want, atol=1e-5)


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    spread=st.floats(0.01, 0.3),
    centers=st.integers(1, 30),
)
def test_near_duplicates_found_exactly_after_the_switch(
    seed: int, spread: float, centers: int
) -> None:
    rng = np.random.default_rng(seed)
    recent = RecentEmbeddings(CAPACITY, train_size=TRAIN)
    x = clustered(rng, 900, centers=centers, spread=spread)
    recent.add(x)
    assert recent.indexed
    base = x[rng.choice(len(x), 50, replace=False)]
    noisy = base * (1 + 0.01 * rng.standard_normal(base.shape).astype(np.float32))
    want = brute(noisy, x)
    near = want > 0.95
    assert near.any()
    got = recent.similarity(noisy)
    assert (got <= want + 1e-5).all()
    # in a tight cluster many held vectors are near-duplicates of a query and the best may sit
    # in an unprobed list; what is found is still a near-duplicate, within 1e-3 of the best
    assert (got[near] > 0.95).all()
    np.testing.assert_allclose(got[near], want[near], atol=1e-3)


@settings(max_examples=20, deadline=None)
@given(
    capacity=st.integers(1, 300),
    chunks=st.lists(st.integers(0, 200), min_size=1, max_size=12),
    train=st.sampled_from([50, 10_000]),
)
def test_capacity_bound_and_newest_held(capacity: int, chunks: list[int], train: int) -> None:
    recent = RecentEmbeddings(capacity, nprobe=64, train_size=train)
    rng = np.random.default_rng(capacity)
    # distinct directions so "which vectors are held" is visible through similarity 1
    x = rng.standard_normal((sum(chunks), DIM)).astype(np.float32)
    start = 0
    for size in chunks:
        recent.add(x[start : start + size])
        start += size
        assert len(recent) <= capacity
        assert len(recent) >= min(start, capacity - recent.drop_block)
    assert recent.drop_block == max(1, capacity // 64)
    if start:
        held = x[start - len(recent) : start]
        np.testing.assert_allclose(recent.similarity(held), 1.0, atol=1e-5)
        q = rng.standard_normal((40, DIM)).astype(np.float32)
        np.testing.assert_allclose(recent.similarity(q), brute(q, held), atol=1e-5)


def test_ring_holds_between_capacity_minus_block_and_capacity() -> None:
    recent = RecentEmbeddings(CAPACITY, train_size=TRAIN)
    rng = np.random.default_rng(4)
    sizes = []
    for _ in range(CAPACITY + 300):
        recent.add(rng.standard_normal((1, DIM)))
        sizes.append(len(recent))
    assert max(sizes) == CAPACITY
    assert min(sizes[CAPACITY:]) == CAPACITY - recent.drop_block + 1


def test_use_another_model_version_empties_the_set() -> None:
    rng = np.random.default_rng(5)
    recent = RecentEmbeddings(CAPACITY, train_size=TRAIN)
    recent.use("m-1")
    recent.add(clustered(rng, TRAIN + 10))
    assert recent.indexed
    recent.use("m-1")  # same version: nothing changes
    assert len(recent) == TRAIN + 10
    recent.use("m-2")
    assert len(recent) == 0 and not recent.indexed and recent.model_version == "m-2"
    # the new model may have another width
    q = rng.standard_normal((3, DIM + 4))
    np.testing.assert_array_equal(recent.novelty(q), 1.0)
    recent.add(q)
    np.testing.assert_allclose(recent.similarity(q), 1.0, atol=1e-5)


@pytest.mark.parametrize("indexed", [False, True])
def test_dimension_mismatch_raises(indexed: bool) -> None:
    recent = RecentEmbeddings(CAPACITY, train_size=TRAIN)
    recent.add(np.random.default_rng(6).standard_normal((TRAIN if indexed else 3, DIM)))
    assert recent.indexed == indexed
    for call in (recent.similarity, recent.novelty, recent.add):
        with pytest.raises(InvalidInputError, match=f"dimension {DIM + 1}"):
            call(np.ones((2, DIM + 1)))
    assert len(recent) == (TRAIN if indexed else 3)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_raises(bad: float) -> None:
    recent = RecentEmbeddings(CAPACITY, train_size=TRAIN)
    x = np.ones((3, DIM))
    x[1, 2] = bad
    with pytest.raises(InvalidInputError):
        recent.add(x)
    assert len(recent) == 0
    recent.add(np.ones((1, DIM)))
    with pytest.raises(InvalidInputError):
        recent.similarity(x)


@pytest.mark.parametrize("shape", [(DIM,), (2, 3, DIM), ()])
def test_wrong_rank_raises(shape: tuple[int, ...]) -> None:
    with pytest.raises(InvalidInputError, match="must be \\(N, D\\)"):
        RecentEmbeddings(10).similarity(np.ones(shape))


@pytest.mark.parametrize(
    "kwargs",
    [{"capacity": 0}, {"capacity": 2.5}, {"capacity": True}, {"nprobe": 0}, {"train_size": -1}],
)
def test_bad_parameters_raise(kwargs: dict[str, object]) -> None:
    args = {"capacity": 10, **kwargs}
    with pytest.raises(InvalidInputError, match="positive integer"):
        RecentEmbeddings(**args)  # type: ignore[arg-type]


def test_bad_train_size_message_names_the_parameter() -> None:
    with pytest.raises(InvalidInputError, match="train_size"):
        RecentEmbeddings(10, train_size=0)
