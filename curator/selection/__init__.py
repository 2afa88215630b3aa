"""Selection: which frames to keep on the edge, and which items to label on the server.

Two halves, kept apart:

- pool selection (:mod:`curator.selection.pool`): ``select(strategy, k=..., ...)`` chooses ``k``
  items of a pool by a strategy named in :data:`STRATEGIES` (``random``, top-k uncertainty,
  ``kcenter``, ``typicality``, ``class_balance``, ``uncertainty_diversity`` (the default),
  ``cluster_uncertainty``). Pure functions over arrays.
- stream selection (:mod:`curator.selection.stream`, :mod:`curator.selection.budget`): a
  :class:`StreamSelector` decides about one frame at a time against a keep-ratio budget and an
  hourly cap; ``decide()`` changes nothing, ``commit()`` advances the state.
"""

from curator.selection.budget import BudgetVerdict, KeepRateCap, KeepRatioBudget
from curator.selection.kcenter import covering_radius, kcenter_greedy
from curator.selection.pool import DEFAULT_STRATEGY, STRATEGIES, PoolStrategy, select
from curator.selection.stream import REASONS, StreamDecision, StreamSelector

__all__ = [
    "DEFAULT_STRATEGY",
    "REASONS",
    "STRATEGIES",
    "BudgetVerdict",
    "KeepRateCap",
    "KeepRatioBudget",
    "PoolStrategy",
    "StreamDecision",
    "StreamSelector",
    "covering_radius",
    "kcenter_greedy",
    "select",
]
