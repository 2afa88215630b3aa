"""Validated pool inputs (mirrors curator/selection/inputs.py)."""

from __future__ import annotations

import numpy as np
import pytest

from curator.errors import InvalidInputError
from curator.selection.inputs import as_generator, build_pool_inputs, check_strength


def test_arrays_are_checked_once_and_normalised() -> None:
    logits = np.array([[2.0, 0.0, 0.0], [0.0, 0.0, 3.0], [0.0, 1.0, 0.0]])
    pool = build_pool_inputs(
        embeddings=[[3.0, 4.0], [0.0, 2.0], [1.0, 0.0]], logits=logits, exclude=[2]
    )
    assert pool.size == 3
    assert pool.embeddings is not None and pool.embeddings.dtype == np.float32
    np.testing.assert_allclose(pool.embeddings[0], [0.6, 0.8], rtol=1e-6)
    assert pool.probs is not None
    np.testing.assert_allclose(pool.probs.sum(axis=1), 1.0)
    assert pool.predicted is not None and pool.predicted.tolist() == [0, 2, 1]
    assert pool.available.tolist() == [True, True, False]
    assert pool.excluded.tolist() == [2]
    assert pool.n_available == 2


def test_given_predictions_win_over_the_argmax() -> None:
    pool = build_pool_inputs(probs=[[0.9, 0.1], [0.2, 0.8]], predicted=[1, 1])
    assert pool.predicted is not None and pool.predicted.tolist() == [1, 1]


def test_missing_inputs_are_named() -> None:
    pool = build_pool_inputs(predicted=[0, 1])
    with pytest.raises(InvalidInputError, match="needs embeddings"):
        pool.require_embeddings("kcenter")
    with pytest.raises(InvalidInputError, match="probs or logits"):
        pool.require_probs("entropy")
    with pytest.raises(InvalidInputError, match="at least one of"):
        build_pool_inputs()


def test_generators() -> None:
    gen = np.random.default_rng(1)
    assert as_generator(gen) is gen
    assert as_generator(5).integers(1000) == np.random.default_rng(5).integers(1000)
    for bad in (1.5, True, "x", -1):
        with pytest.raises(InvalidInputError, match="rng"):
            as_generator(bad)


def test_strengths() -> None:
    assert check_strength(2, "s") == 2.0
    for bad in (-0.1, float("nan"), None, False):
        with pytest.raises(InvalidInputError, match="s must be"):
            check_strength(bad, "s")
