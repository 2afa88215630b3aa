"""Pool selection: choose ``k`` items to label from a pool, by a strategy named in a registry.

Every strategy is a function ``run(pool, k, rng, **params) -> indices`` over validated arrays
(:class:`curator.selection.inputs.PoolInputs`), declared once in :data:`STRATEGIES` with the
inputs it needs. :func:`select` checks the name, the parameters and the arrays, then runs it.

========================  ======================  ==============================================
name                      needs                   picks
========================  ======================  ==============================================
random                    any input (pool size)   uniformly at random
least_confidence          probs or logits         top-k by least confidence
margin                    probs or logits         top-k by margin
entropy                   probs or logits         top-k by normalised entropy
kcenter                   embeddings              k-center greedy / core-set
typicality                embeddings              TypiClust: most typical per uncovered cluster
class_balance             predicted (or probs)    toward a target class histogram
uncertainty_diversity     embeddings, probs       the default: uncertainty + greedy diversity
cluster_uncertainty       embeddings, probs       most uncertain per k-means cluster
========================  ======================  ==============================================
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np

from curator._validate import check_k
from curator.errors import InvalidInputError
from curator.selection.balance import class_balance_strategy
from curator.selection.combined import (
    cluster_uncertainty_strategy,
    uncertainty_diversity_strategy,
)
from curator.selection.inputs import (
    InputName,
    IntArray,
    PoolInputs,
    as_generator,
    build_pool_inputs,
    missing_input,
)
from curator.selection.kcenter import kcenter_strategy
from curator.selection.ranking import random_strategy, uncertainty_strategy
from curator.selection.typicality import typicality_strategy

__all__ = ["DEFAULT_STRATEGY", "STRATEGIES", "PoolStrategy", "select"]

StrategyFn = Callable[..., IntArray]
"""``run(pool: PoolInputs, k: int, rng: np.random.Generator, **params) -> (k,) int64``."""


@dataclass(frozen=True)
class PoolStrategy:
    """A registered pool strategy.

    Attributes:
        name: the registry key.
        run: the function, ``run(pool, k, rng, **params)``.
        requires: the inputs it cannot run without (see :mod:`curator.selection.inputs`).
        summary: one line for listings and recorded decisions.
    """

    name: str
    run: StrategyFn
    requires: tuple[InputName, ...]
    summary: str

    @property
    def params(self) -> Mapping[str, Any]:
        """The keyword parameters ``run`` accepts, with their defaults."""
        signature = inspect.signature(self.run)
        return {
            p.name: p.default
            for p in signature.parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY
        }


def _registry(*strategies: PoolStrategy) -> Mapping[str, PoolStrategy]:
    return MappingProxyType({s.name: s for s in strategies})


STRATEGIES: Mapping[str, PoolStrategy] = _registry(
    PoolStrategy("random", random_strategy, (), "uniformly at random"),
    PoolStrategy(
        "least_confidence",
        uncertainty_strategy("least_confidence"),
        ("probs",),
        "top-k least confidence",
    ),
    PoolStrategy("margin", uncertainty_strategy("margin"), ("probs",), "top-k margin"),
    PoolStrategy("entropy", uncertainty_strategy("entropy"), ("probs",), "top-k entropy"),
    PoolStrategy("kcenter", kcenter_strategy, ("embeddings",), "k-center greedy (core-set)"),
    PoolStrategy(
        "typicality",
        typicality_strategy,
        ("embeddings",),
        "TypiClust: the most typical item of each uncovered cluster",
    ),
    PoolStrategy(
        "class_balance",
        class_balance_strategy,
        ("predicted",),
        "move the labeled class histogram toward a target",
    ),
    PoolStrategy(
        "uncertainty_diversity",
        uncertainty_diversity_strategy,
        ("embeddings", "probs"),
        "weighted sum of normalised uncertainty and greedy k-center diversity",
    ),
    PoolStrategy(
        "cluster_uncertainty",
        cluster_uncertainty_strategy,
        ("embeddings", "probs"),
        "the most uncertain item of each k-means cluster",
    ),
)
"""Every pool strategy by name."""

DEFAULT_STRATEGY = "uncertainty_diversity"
"""The strategy the label queue uses unless told otherwise."""


def _given(name: InputName, arrays: Mapping[str, Any]) -> bool:
    if name == "probs":
        return arrays["probs"] is not None or arrays["logits"] is not None
    if name == "predicted":
        return any(arrays[a] is not None for a in ("predicted", "probs", "logits"))
    return arrays[name] is not None


def select(
    strategy: str,
    *,
    k: int,
    rng: Any = None,
    embeddings: Any = None,
    probs: Any = None,
    logits: Any = None,
    predicted: Any = None,
    exclude: Any = None,
    **params: Any,
) -> IntArray:
    """Choose up to ``k`` items of the pool by ``strategy``.

    Args:
        strategy: a name in :data:`STRATEGIES`.
        k: how many to choose, ``>= 0``; clipped to the number of available items.
        rng: Generator, int seed or None; the same seed gives the same selection.
        embeddings: ``(N, D)`` embeddings.
        probs: ``(N, C)`` class probabilities (or ``logits``, not both).
        logits: ``(N, C)`` logits.
        predicted: ``(N,)`` predicted class ids; derived from the probabilities when omitted.
        exclude: items already selected or labeled, as a ``(N,)`` bool mask or an index array;
            never returned, and treated as labeled by the strategies that care.
        **params: the strategy's own parameters (``STRATEGIES[name].params``).

    Returns:
        ``(min(k, available),)`` int64 indices into the pool, in selection order, no repeats.

    Raises:
        ValueError: unknown strategy (the message lists the valid ones).
        InvalidInputError: an unknown parameter, a missing or malformed input, a bad ``k``.
    """
    if strategy not in STRATEGIES:
        raise ValueError(
            f"unknown selection strategy {strategy!r}; valid: {', '.join(sorted(STRATEGIES))}"
        )
    spec = STRATEGIES[strategy]
    accepted = spec.params
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise InvalidInputError(
            f"strategy {strategy!r} got unknown parameter(s) {', '.join(unknown)}; "
            f"it accepts: {', '.join(sorted(accepted)) or 'none'}"
        )
    arrays = {
        "embeddings": embeddings,
        "probs": probs,
        "logits": logits,
        "predicted": predicted,
    }
    for name in spec.requires:
        if not _given(name, arrays):
            raise missing_input(strategy, name)
    pool: PoolInputs = build_pool_inputs(**arrays, exclude=exclude)
    k = check_k(k, pool.n_available)
    generator = as_generator(rng)
    picks = spec.run(pool, k, generator, **params)
    return np.asarray(picks, dtype=np.int64)
