"""FleetDedup decisions against a brute-force numpy oracle, and the within-batch rules."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from curator.errors import InvalidInputError
from curator.index import BruteForceIndex, FaissIndex
from server.dedup import SIMILARITY_TOLERANCE, DedupDecision, FleetDedup


@dataclass
class Expected:
    duplicate: bool
    similarity: float | None
    original: tuple[str, int] | None  # ("stored", id) or ("batch", position)
    clear_winner: bool  # the best candidate beats the runner-up by more than float noise


def oracle(
    stored_ids: list[int], stored: list[np.ndarray], batch: np.ndarray, threshold: float
) -> list[Expected]:
    """Max cosine similarity over stored + earlier-accepted batch frames, in float64."""

    def unit(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float64)
        return np.asarray(x / np.linalg.norm(x, axis=-1, keepdims=True))

    s = unit(np.array(stored)) if stored else np.empty((0, batch.shape[1]))
    x = unit(batch)
    out: list[Expected] = []
    accepted: list[int] = []
    for i in range(len(x)):
        candidates = [(float(v), 0, ("stored", stored_ids[j])) for j, v in enumerate(s @ x[i])]
        candidates += [(float(x[j] @ x[i]), 1, ("batch", j)) for j in accepted]
        if not candidates:
            out.append(Expected(False, None, None, True))
            accepted.append(i)
            continue
        # highest similarity; on a tie stored before batch, then the lowest id / position
        candidates.sort(key=lambda c: (-c[0], c[1], c[2][1]))
        best = candidates[0]
        clear = len(candidates) == 1 or best[0] - candidates[1][0] > 1e-5
        duplicate = best[0] >= threshold - SIMILARITY_TOLERANCE
        out.append(Expected(duplicate, best[0], best[2] if duplicate else None, clear))
        if not duplicate:
            accepted.append(i)
    return out


def compare(got: list[DedupDecision], expected: list[Expected], ids: np.ndarray | None) -> None:
    assert [d.is_duplicate for d in got] == [e.duplicate for e in expected]
    for d, e in zip(got, expected, strict=True):
        if e.similarity is None:
            assert d.similarity is None
        else:
            assert d.similarity == pytest.approx(e.similarity, abs=2e-5)
        if not e.duplicate:
            assert d.duplicate_of_id is None and d.batch_position_of_original is None
        elif e.clear_winner:
            assert e.original is not None
            kind, which = e.original
            if kind == "stored":
                assert (d.duplicate_of_id, d.batch_position_of_original) == (which, None)
            else:
                original_id = None if ids is None else int(ids[which])
                assert (d.duplicate_of_id, d.batch_position_of_original) == (original_id, which)


def run_against_oracle(
    dedup: FleetDedup, batches: list[np.ndarray], *, with_ids: bool
) -> tuple[int, int, int]:
    """Check, compare with the oracle, accept; return (accepted, stored dups, in-batch dups)."""
    stored_ids: list[int] = []
    stored: list[np.ndarray] = []
    next_id, counts = 100, [0, 0, 0]
    for batch in batches:
        ids = np.arange(next_id, next_id + len(batch)) if with_ids else None
        next_id += len(batch)
        got = dedup.check("v1", batch, ids=ids)
        compare(got, oracle(stored_ids, stored, batch, dedup.threshold), ids)
        kept = [i for i, d in enumerate(got) if not d.is_duplicate]
        kept_ids = ids[kept] if ids is not None else np.arange(next_id, next_id + len(kept))
        next_id += 0 if ids is not None else len(kept)
        dedup.accept("v1", kept_ids, batch[kept])
        stored_ids += kept_ids.tolist()
        stored += list(batch[kept])
        counts[0] += len(kept)
        counts[1] += sum(
            d.duplicate_of_id is not None and d.batch_position_of_original is None for d in got
        )
        counts[2] += sum(d.batch_position_of_original is not None for d in got)
    return counts[0], counts[1], counts[2]


FACTORIES: dict[str, Callable[[int], Any]] = {
    "faiss-default": lambda dim: FaissIndex(dim),
    "brute": BruteForceIndex,
}


@pytest.mark.parametrize("factory", list(FACTORIES))
@pytest.mark.parametrize("with_ids", [True, False])
def test_decisions_match_the_brute_force_oracle_on_clustered_and_random_embeddings(
    clustered: Any, factory: str, with_ids: bool
) -> None:
    rng = np.random.default_rng(7)
    dedup = FleetDedup(0.95, index_factory=FACTORIES[factory])
    batches: list[np.ndarray] = []
    for b in range(8):
        near = clustered(30, 16, centres=12, spread=0.3, rng=rng)
        random = rng.standard_normal((10, 16)).astype(np.float32)
        batch = np.concatenate([near, random])
        if b:  # exact re-uploads of an earlier batch's frames, and copies within the batch
            batch = np.concatenate([batch, batches[b - 1][:5], batch[:3]])
        batches.append(batch[rng.permutation(len(batch))])
    accepted, stored_dups, batch_dups = run_against_oracle(dedup, batches, with_ids=with_ids)
    assert accepted > 30 and stored_dups > 30 and batch_dups > 10  # the test saw every case


@settings(max_examples=60)
@given(
    data=st.data(),
    dim=st.integers(2, 4),
    threshold=st.sampled_from([-1.0, -0.5, 0.0, 0.5, 0.8, 0.95, 1.0]),
)
def test_small_integer_embeddings_with_ties_match_the_oracle(
    data: Any, dim: int, threshold: float
) -> None:
    rows = st.lists(st.integers(-2, 2), min_size=dim, max_size=dim).filter(any)
    batches = [
        np.array(data.draw(st.lists(rows, min_size=1, max_size=8)), np.float32)
        for _ in range(data.draw(st.integers(1, 3)))
    ]
    with_ids = data.draw(st.booleans())
    run_against_oracle(
        FleetDedup(threshold, index_factory=BruteForceIndex), batches, with_ids=with_ids
    )


def _angle(theta: float) -> list[float]:
    return [float(np.cos(theta)), float(np.sin(theta))]


def test_within_batch_duplicates_point_to_an_accepted_earlier_frame() -> None:
    step = np.arccos(0.97)  # b is 0.97 from a; c is 0.97 from b but 0.88 from a
    batch = np.array([_angle(0), _angle(step), _angle(2 * step), _angle(0)], np.float32)
    got = FleetDedup(0.95).check("v1", batch, ids=[11, 12, 13, 14])
    assert [d.is_duplicate for d in got] == [False, True, False, True]
    assert got[0] == DedupDecision(None, None, None, 0.95)
    assert (got[1].duplicate_of_id, got[1].batch_position_of_original) == (11, 0)
    assert got[1].similarity == pytest.approx(0.97, abs=1e-6)
    # c is not a duplicate of b, which was not accepted; its best accepted match is a
    assert got[2].similarity == pytest.approx(2 * 0.97**2 - 1, abs=1e-6)
    assert (got[3].duplicate_of_id, got[3].batch_position_of_original) == (11, 0)
    assert got[3].similarity == pytest.approx(1.0, abs=1e-6)


def test_without_ids_an_in_batch_original_is_named_by_position_only() -> None:
    got = FleetDedup().check("v1", [[1.0, 0.0], [1.0, 0.0]])
    assert got[1] == DedupDecision(None, got[1].similarity, 0, 0.95)
    assert got[1].is_duplicate


def test_a_stored_frame_wins_a_tie_with_a_batch_frame() -> None:
    dedup = FleetDedup(0.4)
    dedup.accept("v1", [5], [[1.0, 0.0, 0.0, 0.0]])
    # every number here is exact in float32, so the tie is exact: 0.5 to both candidates
    batch = [[0.0, 1.0, 0.0, 0.0], [0.5, 0.5, 0.5, 0.5]]
    got = dedup.check("v1", batch, ids=[6, 7])
    assert not got[0].is_duplicate
    assert got[1] == DedupDecision(5, 0.5, None, 0.4)


def test_check_changes_nothing() -> None:
    dedup = FleetDedup()
    dedup.accept("v1", [1], [[1.0, 0.0, 0.0]])
    batch = np.eye(3, dtype=np.float32)
    first = dedup.check("v1", batch, ids=[2, 3, 4])
    assert dedup.check("v1", batch, ids=[2, 3, 4]) == first
    assert dedup.stats()["vectors"] == 1
    assert first[0].duplicate_of_id == 1 and not first[1].is_duplicate


def test_a_frame_already_stored_is_accepted_again_and_does_not_match_itself() -> None:
    dedup = FleetDedup()
    dedup.accept("v1", [1, 2], [[1.0, 0.0], [0.0, 1.0]])
    replay = dedup.check("v1", [[1.0, 0.0], [0.0, 1.0]], ids=[1, 2])
    assert [d.is_duplicate for d in replay] == [False, False]
    assert [d.similarity for d in replay] == [pytest.approx(0.0, abs=1e-6)] * 2
    fresh = dedup.check("v1", [[1.0, 0.0]], ids=[3])
    assert fresh[0].duplicate_of_id == 1


@pytest.mark.parametrize("rows", [3, 1500])
def test_long_batches_cross_the_gram_block_boundary(rows: int) -> None:
    rng = np.random.default_rng(rows)
    base = rng.standard_normal((rows, 64)).astype(np.float32)
    batch = np.concatenate([base, base[::-1]])  # the second half copies the first
    got = FleetDedup().check("v1", batch)
    assert not any(d.is_duplicate for d in got[:rows])
    positions = [d.batch_position_of_original for d in got[rows:]]
    assert positions == list(range(rows - 1, -1, -1))


class TestThresholdBoundaries:
    def test_at_one_exact_copies_are_duplicates_and_near_copies_are_not(self) -> None:
        dedup = FleetDedup(1.0)
        x = np.random.default_rng(0).standard_normal((50, 64)).astype(np.float32)
        dedup.accept("v1", np.arange(50), x)
        copies = dedup.check("v1", x * 3.0)  # a scaled copy has cosine 1 too
        assert [d.duplicate_of_id for d in copies] == list(range(50))
        near = np.array([_angle(0), _angle(np.arccos(0.9999))], np.float32)
        assert not FleetDedup(1.0).check("v1", near)[1].is_duplicate

    def test_at_minus_one_every_frame_after_the_first_is_a_duplicate(self) -> None:
        got = FleetDedup(-1.0).check("v1", [[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]])
        assert [d.is_duplicate for d in got] == [False, True, True]
        assert got[1].similarity == pytest.approx(-1.0)

    def test_a_similarity_equal_to_the_threshold_is_a_duplicate(self) -> None:
        pair = [_angle(0), _angle(np.pi / 3)]  # cosine 0.5
        assert FleetDedup(0.5).check("v1", pair)[1].is_duplicate
        assert not FleetDedup(0.5 + 2 * SIMILARITY_TOLERANCE).check("v1", pair)[1].is_duplicate

    @pytest.mark.parametrize("bad", [1.0001, -1.5, float("nan"), float("inf"), True, "0.9", None])
    def test_a_threshold_outside_minus_one_to_one_is_refused(self, bad: Any) -> None:
        with pytest.raises(InvalidInputError, match="threshold"):
            FleetDedup(bad)

    def test_every_decision_records_the_threshold(self) -> None:
        got = FleetDedup(0.42).check("v1", np.eye(4))
        assert {d.threshold for d in got} == {0.42}
