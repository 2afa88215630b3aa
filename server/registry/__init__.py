"""The model registry: versions with sha256, metrics, parent and snapshot, and the promotion gate.

- :class:`ModelRegistry` (:mod:`server.registry.store`): ``register`` (contract-checked,
  idempotent on the bytes, one version per snapshot), ``get``, ``list``, ``latest_promoted``,
  ``promote``/``demote``, ``read_file``.
- :func:`decide` and :func:`register_and_gate` (:mod:`server.registry.gate`): a candidate worse
  than the current model by more than a margin is kept but not promoted.

docs/registry.md describes the table, the rules and the HTTP routes.
"""

from server.registry.gate import (
    DEFAULT_MARGIN,
    DEFAULT_METRIC,
    GateDecision,
    GatedModel,
    decide,
    register_and_gate,
)
from server.registry.store import (
    ModelEntry,
    ModelRegistry,
    RegisteredModel,
    RegistryConflict,
    StagedModel,
    check_metrics,
    download_path,
)

__all__ = [
    "DEFAULT_MARGIN",
    "DEFAULT_METRIC",
    "GateDecision",
    "GatedModel",
    "ModelEntry",
    "ModelRegistry",
    "RegisteredModel",
    "RegistryConflict",
    "StagedModel",
    "check_metrics",
    "decide",
    "download_path",
    "register_and_gate",
]
