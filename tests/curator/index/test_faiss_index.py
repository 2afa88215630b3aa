"""FaissIndex against the brute-force oracle: exact equality for flat, recall floors for HNSW."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import faiss
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from curator.errors import InvalidInputError
from curator.index import BruteForceIndex, FaissIndex, openmp_threads

Clustered = Callable[..., tuple[np.ndarray, np.ndarray]]


def unit_vectors(n: int, dim: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def oracle(ids: np.ndarray, vectors: np.ndarray) -> BruteForceIndex:
    index = BruteForceIndex(vectors.shape[1])
    index.add(ids, vectors)
    return index


def recall(found: np.ndarray, truth: np.ndarray, at: int) -> float:
    hits = [len(np.intersect1d(f[:at], t[:at])) for f, t in zip(found, truth, strict=True)]
    return float(np.mean(hits)) / at


@pytest.mark.parametrize("kind", ["flat", "auto"])
def test_exact_search_equals_the_oracle(kind: str) -> None:
    x, q = unit_vectors(3000, 32, seed=1), unit_vectors(200, 32, seed=2)
    ids = np.random.default_rng(3).choice(2**62, size=3000, replace=False)
    index = FaissIndex(32, kind=kind)  # type: ignore[arg-type]
    index.add(ids, x)
    assert index.structure == "flat"
    truth = oracle(ids, x)
    for batch in (q, q[:1]):  # batched, and the one-thread small-batch path
        sims, found = index.search(batch, 10)
        want_sims, want_ids = truth.search(batch, 10)
        np.testing.assert_array_equal(found, want_ids)
        np.testing.assert_allclose(sims, want_sims, atol=1e-5)
    gone = ids[::3]
    assert index.remove(gone) == truth.remove(gone) == 1000
    np.testing.assert_array_equal(index.search(q, 10)[1], truth.search(q, 10)[1])


@settings(max_examples=40, deadline=None)
@given(
    x=hnp.arrays(
        np.float32,
        st.tuples(st.integers(1, 30), st.just(4)),
        elements=st.floats(-4, 4, width=32).filter(lambda v: abs(v) > 1e-3),
    ),
    k=st.integers(1, 35),
)
def test_flat_similarities_match_the_oracle_even_with_ties(x: np.ndarray, k: int) -> None:
    ids = np.arange(len(x)) * 7 + 2**45
    index = FaissIndex(4, kind="flat")
    index.add(ids, x)
    truth = oracle(ids, x)
    sims, found = index.search(x, k)
    want_sims, want_ids = truth.search(x, k)
    np.testing.assert_allclose(sims, want_sims, atol=1e-5)
    np.testing.assert_array_equal(found == -1, want_ids == -1)
    # whichever tied id FAISS returned, its similarity is the one reported
    for row, (s_row, i_row) in enumerate(zip(sims, found, strict=True)):
        all_sims, all_ids = truth.search(x[row : row + 1], len(x))
        true_sim = dict(zip(all_ids[0].tolist(), all_sims[0].tolist(), strict=True))
        got = [true_sim[i] for i in i_row[i_row >= 0].tolist()]
        np.testing.assert_allclose(got, s_row[i_row >= 0], atol=1e-5)


def test_hnsw_recall_on_clustered_data(clustered: Clustered) -> None:
    base, queries = clustered(20_000, 64, centres=200, spread=1.0, seed=4)
    ids = np.arange(len(base), dtype=np.int64) + 2**41
    index = FaissIndex(64, kind="hnsw")
    index.add(ids, base)
    _, found = index.search(queries[:500], 10)
    _, truth = oracle(ids, base).search(queries[:500], 10)
    # measured with the defaults (M=32, efConstruction=160, efSearch=64): 1.0 and 0.9998;
    # efSearch=16 would measure 0.986 and 0.977
    assert recall(found, truth, 1) >= 0.98
    assert recall(found, truth, 10) >= 0.98


def test_hnsw_never_returns_removed_ids_and_compaction_keeps_the_rest(
    clustered: Clustered,
) -> None:
    base, queries = clustered(3000, 16, centres=30, spread=1.0, seed=5)
    ids = np.arange(3000, dtype=np.int64) * 3
    index = FaissIndex(16, kind="hnsw", compact_ratio=None)
    index.add(ids, base)
    gone = ids[np.random.default_rng(6).permutation(3000)[:1200]]
    assert index.remove(gone) == 1200
    assert len(index) == 1800 and index.tombstones == 1200
    live = np.setdiff1d(ids, gone)
    _, truth = oracle(live, base[np.isin(ids, live)]).search(queries, 10)
    for _ in range(2):  # with tombstones, then after compaction
        sims, found = index.search(np.concatenate([queries, base]), 50)
        assert not np.isin(found, gone).any()
        assert (found >= 0).all() and np.isfinite(sims).all()
        assert recall(found[: len(queries)], truth, 10) >= 0.95
        index.compact()
        assert index.tombstones == 0 and len(index) == 1800 and index.structure == "hnsw"


def test_hnsw_compacts_itself_past_the_ratio() -> None:
    x = unit_vectors(400, 8)
    index = FaissIndex(8, kind="hnsw", compact_ratio=0.25)
    index.add(np.arange(400), x)
    index.remove(np.arange(100))
    assert index.tombstones == 100
    index.remove([100])
    assert index.tombstones == 0 and len(index) == 299
    _, found = index.search(x, 1)
    np.testing.assert_array_equal(found[101:, 0], np.arange(101, 400))
    assert not np.isin(found, np.arange(101)).any()


def test_auto_switches_to_hnsw_past_the_threshold_and_back_when_compacted() -> None:
    x = unit_vectors(600, 16, seed=7)
    ids = np.arange(600, dtype=np.int64) + 2**50
    index = FaissIndex(16, kind="auto", hnsw_threshold=500)
    index.add(ids[:300], x[:300])
    structures = [index.structure]
    index.add(ids[300:500], x[300:500])
    structures.append(index.structure)  # 500 is not above the threshold
    index.add(ids[500:], x[500:])
    structures.append(index.structure)
    assert structures == ["flat", "flat", "hnsw"]
    assert index.description.startswith("HNSW32,")
    assert len(index) == 600 and all(int(i) in index for i in ids)
    _, found = index.search(x, 10)
    assert (found[:, 0] == ids).mean() >= 0.99 and (found == ids[:, None]).any(axis=1).all()
    index.remove(ids[:200])  # 200 tombstones > 0.25 * 600: compacts to 400 live -> flat
    assert index.structure == "flat" and index.tombstones == 0 and len(index) == 400
    np.testing.assert_array_equal(index.search(x, 5)[1], oracle(ids[200:], x[200:]).search(x, 5)[1])


def test_hnsw_with_k_above_ef_search_returns_k_distinct_ids() -> None:
    x = unit_vectors(500, 8, seed=8)
    index = FaissIndex(8, kind="hnsw", ef_search=16)
    index.add(np.arange(500), x)
    _, found = index.search(x[:5], 100)
    assert all(len(set(row.tolist())) == 100 for row in found) and (found >= 0).all()
    index.ef_search = 128
    assert index.ef_search == 128 and index.description.endswith("efSearch=128")
    with pytest.raises(InvalidInputError, match="ef_search"):
        index.ef_search = 0


def test_search_leaves_the_openmp_thread_count_alone() -> None:
    before = faiss.omp_get_max_threads()
    index = FaissIndex(8, kind="flat")
    index.add(np.arange(100), unit_vectors(100, 8))
    index.search(unit_vectors(1, 8), 3)
    assert faiss.omp_get_max_threads() == before
    index.search(unit_vectors(50, 8), 3)
    assert faiss.omp_get_max_threads() == before


def test_save_keeps_tombstones_and_settings(tmp_path: Path) -> None:
    x = unit_vectors(300, 8)
    index = FaissIndex(8, kind="hnsw", m=8, ef_construction=40, ef_search=20, compact_ratio=0.9)
    index.add(np.arange(300), x)
    index.remove(np.arange(0, 300, 4))
    index.save(tmp_path / "i.faiss")
    loaded = FaissIndex.load(tmp_path / "i.faiss")
    assert loaded.tombstones == index.tombstones == 75
    assert loaded.description == "HNSW8,efConstruction=40,efSearch=20"
    assert (loaded.kind, loaded.structure) == ("hnsw", "hnsw")
    for got, want in zip(loaded.search(x, 5), index.search(x, 5), strict=True):
        np.testing.assert_array_equal(got, want)


def test_load_rejects_a_truncated_file(tmp_path: Path) -> None:
    index = FaissIndex(8, kind="flat")
    index.add(np.arange(50), unit_vectors(50, 8))
    path = tmp_path / "i.faiss"
    index.save(path)
    data = path.read_bytes()
    assert data.startswith(b"CURATOR-FAISS-INDEX/1\n")
    for cut in (30, len(data) // 2, len(data) - 10):
        path.write_bytes(data[:cut])
        with pytest.raises(InvalidInputError, match="not a saved FaissIndex"):
            FaissIndex.load(path)


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"kind": "ivf"}, ValueError, "valid kinds"),
        ({"m": 0}, InvalidInputError, "m must be"),
        ({"ef_search": 1.5}, InvalidInputError, "ef_search"),
        ({"hnsw_threshold": -1}, InvalidInputError, "hnsw_threshold"),
        ({"compact_ratio": 0.0}, InvalidInputError, "compact_ratio"),
        ({"compact_ratio": 1.5}, InvalidInputError, "compact_ratio"),
        ({"compact_ratio": "0.5"}, InvalidInputError, "compact_ratio"),
    ],
)
def test_bad_options_raise(options: dict[str, object], error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        FaissIndex(8, **options)  # type: ignore[arg-type]


def test_load_rejects_a_header_that_disagrees_with_the_faiss_index(tmp_path: Path) -> None:
    from curator.index.base import atomic_write
    from curator.index.faiss_file import write_faiss_file

    good = faiss.IndexFlatIP(8)
    good.add(unit_vectors(3, 8))
    settings_ = {"dim": 4, "kind": "flat", "structure": "flat"}
    path = tmp_path / "bad.faiss"
    atomic_write(path, lambda f: write_faiss_file(f, settings_, np.arange(3), good))
    with pytest.raises(InvalidInputError, match="inconsistent: header dim 4, FAISS dim 8"):
        FaissIndex.load(path)
    settings_["dim"] = 8
    atomic_write(path, lambda f: write_faiss_file(f, settings_, np.array([1, 1, 2]), good))
    with pytest.raises(InvalidInputError, match="1 repeated id"):
        FaissIndex.load(path)


def test_openmp_threads_caps_this_thread_and_restores_it() -> None:
    before = faiss.omp_get_max_threads()
    with openmp_threads(1):
        assert faiss.omp_get_max_threads() == 1
        with openmp_threads(before + 4):  # never raises the cap it is under
            assert faiss.omp_get_max_threads() == 1
        assert faiss.omp_get_max_threads() == 1
    assert faiss.omp_get_max_threads() == before


@pytest.mark.parametrize("n", [0, -1, 1.0, True, None])
def test_openmp_threads_needs_a_positive_count(n: object) -> None:
    with pytest.raises(InvalidInputError, match="positive integer"), openmp_threads(n):  # type: ignore[arg-type]
        pass
