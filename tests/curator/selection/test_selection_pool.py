"""One contract suite run over every registered pool strategy, plus the registry itself.

Mirrors curator/selection/pool.py (the ``selection_`` prefix keeps the basename unique in the
rootdir-importmode test tree).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from curator.errors import InvalidInputError
from curator.selection import DEFAULT_STRATEGY, STRATEGIES, select
from curator.uncertainty import softmax

NAMES = sorted(STRATEGIES)

# A bad value for every declared parameter of every strategy; test_bad_params_cover_every_param
# fails when a strategy gains a parameter without an entry here.
BAD_PARAMS: dict[str, dict[str, list[Any]]] = {
    "random": {},
    "least_confidence": {},
    "margin": {},
    "entropy": {},
    "kcenter": {},
    "typicality": {
        "n_neighbours": [0, 2.5],
        "max_clusters": [0, "10"],
        "min_cluster_size": [-1],
        "max_iter": [0, True],
    },
    "class_balance": {
        "target": [[-1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0], [1.0, 1.0], {7: 1.0}],
        "labeled_counts": [[1.0, 2.0], [-1.0, 0.0, 0.0, 0.0]],
        "within": ["best"],
        "uncertainty": ["bald", 3],
    },
    "uncertainty_diversity": {
        "uncertainty": ["nope"],
        "uncertainty_strength": [-1.0, float("nan"), "high"],
        "diversity_strength": [float("inf"), -0.5],
    },
    "cluster_uncertainty": {
        "uncertainty": ["nope"],
        "max_clusters": [0],
        "min_cluster_size": [0],
        "max_iter": [-3],
    },
}

# Which caller arguments satisfy each declared input.
SATISFIES = {
    "embeddings": ("embeddings",),
    "probs": ("probs", "logits"),
    "predicted": ("predicted", "probs", "logits"),
}


def inputs(pool: dict[str, Any]) -> dict[str, Any]:
    return {"embeddings": pool["embeddings"], "logits": pool["logits"]}


def check_selection(picks: np.ndarray, n: int, excluded: set[int], k: int) -> None:
    available = n - len(excluded)
    assert picks.dtype == np.int64
    assert picks.ndim == 1
    assert len(picks) == min(k, available)
    assert len(set(picks.tolist())) == len(picks)
    assert not set(picks.tolist()) & excluded
    assert ((picks >= 0) & (picks < n)).all()


def test_registry_lists_the_strategies() -> None:
    assert set(NAMES) == {
        "random",
        "least_confidence",
        "margin",
        "entropy",
        "kcenter",
        "typicality",
        "class_balance",
        "uncertainty_diversity",
        "cluster_uncertainty",
    }
    assert DEFAULT_STRATEGY == "uncertainty_diversity"
    for name, spec in STRATEGIES.items():
        assert spec.name == name
        assert spec.summary


def test_unknown_strategy_lists_valid_names(pool: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="unknown selection strategy 'coreset'") as info:
        select("coreset", k=3, **inputs(pool))
    for name in NAMES:
        assert name in str(info.value)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("k", [0, 1, 7, 60, 500])
@pytest.mark.parametrize("exclude_as", ["none", "indices", "mask"])
def test_contract_shape_uniqueness_exclusion(
    pool: dict[str, Any], name: str, k: int, exclude_as: str
) -> None:
    n = len(pool["embeddings"])
    excluded = set() if exclude_as == "none" else {0, 5, 17, 33, 59}
    exclude: Any = None
    if exclude_as == "indices":
        exclude = np.array(sorted(excluded))
    elif exclude_as == "mask":
        exclude = np.isin(np.arange(n), sorted(excluded))
    picks = select(name, k=k, rng=3, exclude=exclude, **inputs(pool))
    check_selection(picks, n, excluded, k)
    if k >= n:
        assert set(picks.tolist()) == set(range(n)) - excluded


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_selection(pool: dict[str, Any], name: str) -> None:
    first = select(name, k=12, rng=11, exclude=[3, 4], **inputs(pool))
    again = select(name, k=12, rng=11, exclude=[3, 4], **inputs(pool))
    from_generator = select(
        name, k=12, rng=np.random.default_rng(11), exclude=[3, 4], **inputs(pool)
    )
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(first, from_generator)


def test_random_depends_on_the_seed(pool: dict[str, Any]) -> None:
    a = select("random", k=20, rng=1, **inputs(pool))
    b = select("random", k=20, rng=2, **inputs(pool))
    assert a.tolist() != b.tolist()


@pytest.mark.parametrize("name", NAMES)
def test_inputs_are_not_modified(pool: dict[str, Any], name: str) -> None:
    arrays = inputs(pool)
    before = {key: value.copy() for key, value in arrays.items()}
    exclude = np.array([1, 2])
    select(name, k=10, rng=0, exclude=exclude, **arrays)
    for key, value in arrays.items():
        np.testing.assert_array_equal(value, before[key])
    np.testing.assert_array_equal(exclude, [1, 2])


@pytest.mark.parametrize("name", NAMES)
def test_everything_excluded_gives_nothing(pool: dict[str, Any], name: str) -> None:
    n = len(pool["embeddings"])
    picks = select(name, k=5, rng=0, exclude=np.ones(n, dtype=bool), **inputs(pool))
    assert picks.dtype == np.int64
    assert picks.shape == (0,)


@pytest.mark.parametrize("name", NAMES)
def test_probs_and_logits_give_the_same_selection(pool: dict[str, Any], name: str) -> None:
    by_logits = select(name, k=9, rng=5, **inputs(pool))
    by_probs = select(
        name, k=9, rng=5, embeddings=pool["embeddings"], probs=softmax(pool["logits"])
    )
    np.testing.assert_array_equal(by_logits, by_probs)


@pytest.mark.parametrize("name", NAMES)
def test_missing_required_input_is_named(pool: dict[str, Any], name: str) -> None:
    spec = STRATEGIES[name]
    for needed in spec.requires:
        given_inputs = {
            key: value for key, value in inputs(pool).items() if key not in SATISFIES[needed]
        }
        with pytest.raises(InvalidInputError, match=f"needs {needed}"):
            select(name, k=3, rng=0, **given_inputs)
    with pytest.raises(InvalidInputError):
        select(name, k=3, rng=0)


@pytest.mark.parametrize("name", NAMES)
def test_unknown_param_is_rejected(pool: dict[str, Any], name: str) -> None:
    with pytest.raises(InvalidInputError, match=r"unknown parameter.*bogus"):
        select(name, k=3, rng=0, bogus=1, **inputs(pool))


def test_bad_params_cover_every_param() -> None:
    for name in NAMES:
        assert set(BAD_PARAMS[name]) == set(STRATEGIES[name].params), name


@pytest.mark.parametrize(
    ("name", "param", "value"),
    [
        (name, param, value)
        for name in NAMES
        for param, values in BAD_PARAMS[name].items()
        for value in values
    ],
)
def test_bad_param_values_are_rejected(
    pool: dict[str, Any], name: str, param: str, value: Any
) -> None:
    with pytest.raises(InvalidInputError, match=param):
        select(name, k=5, rng=0, **{param: value}, **inputs(pool))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("k", [-1, 2.5, True, "3", None])
def test_bad_k_is_rejected(pool: dict[str, Any], name: str, k: Any) -> None:
    with pytest.raises(InvalidInputError, match="k must be"):
        select(name, k=k, rng=0, **inputs(pool))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"exclude": [60]}, "outside the pool"),
        ({"exclude": [-1]}, "outside the pool"),
        ({"exclude": np.zeros(59, dtype=bool)}, "shape"),
        ({"exclude": [0.5]}, "integer indices"),
        ({"rng": 1.5}, "rng must be"),
        ({"rng": "seed"}, "rng must be"),
    ],
)
def test_bad_exclude_and_rng_are_rejected(
    pool: dict[str, Any], kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        select("random", k=3, **{"rng": 0, **kwargs}, **inputs(pool))


def test_inputs_must_agree_on_the_pool_size(pool: dict[str, Any]) -> None:
    with pytest.raises(InvalidInputError, match="disagree on the pool size"):
        select("entropy", k=3, embeddings=pool["embeddings"][:-1], logits=pool["logits"])
    with pytest.raises(InvalidInputError, match="probs or logits, not both"):
        select("entropy", k=3, logits=pool["logits"], probs=softmax(pool["logits"]))
    with pytest.raises(InvalidInputError, match="NaN"):
        bad = pool["embeddings"].copy()
        bad[3, 1] = np.nan
        select("kcenter", k=3, embeddings=bad)
    with pytest.raises(InvalidInputError, match="predicted"):
        select("class_balance", k=3, predicted=[0, 1, -2], within="random")
    with pytest.raises(InvalidInputError, match="predicted holds class 9"):
        select("class_balance", k=3, logits=np.zeros((3, 4)), predicted=[0, 1, 9])


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=12)
@given(
    n=st.integers(1, 40),
    k=st.integers(0, 45),
    seed=st.integers(0, 2**16),
    excluded_fraction=st.floats(0.0, 1.0),
)
def test_contract_holds_for_any_pool(
    make_pool: Callable[..., dict[str, Any]],
    name: str,
    n: int,
    k: int,
    seed: int,
    excluded_fraction: float,
) -> None:
    pool = make_pool(n=n, seed=seed)
    rng = np.random.default_rng(seed)
    excluded = set(np.flatnonzero(rng.random(n) < excluded_fraction).tolist())
    picks = select(name, k=k, rng=seed, exclude=sorted(excluded), **inputs(pool))
    check_selection(picks, n, excluded, k)
    np.testing.assert_array_equal(
        picks, select(name, k=k, rng=seed, exclude=sorted(excluded), **inputs(pool))
    )
