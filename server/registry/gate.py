"""The promotion gate: a candidate worse than the current model is kept, not promoted.

:func:`decide` is pure: it compares the candidate's held-out metric with the current promoted
model's and answers a :class:`GateDecision` with its reason. :func:`register_and_gate` registers
a model file and applies the decision in the same transaction, storing the reason with the
version (``model_versions.gate_reason``) and logging it.

The rules, for a metric where higher is better (``higher_is_better=False`` flips them):

- the candidate lacks the metric: not promoted (nothing to judge it by);
- no current promoted model, or one without the metric: promoted;
- the candidate is worse than the current one by more than ``margin`` (absolute): not promoted;
  a drop of exactly ``margin`` passes (compared with a 1e-12 tolerance for float rounding).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from curator.errors import InvalidInputError
from curator.wire import ModelInfo
from server.registry.checks import check_metrics

if TYPE_CHECKING:
    from server.registry.store import ModelRegistry

__all__ = ["DEFAULT_MARGIN", "DEFAULT_METRIC", "GateDecision", "GatedModel", "decide",
           "register_and_gate"]  # fmt: skip

DEFAULT_METRIC = "accuracy"
DEFAULT_MARGIN = 0.02
_TOLERANCE = 1e-12
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GateDecision:
    """Whether to promote a candidate, and why (one line for logs and the registry)."""

    promote: bool
    reason: str


@dataclass(frozen=True)
class GatedModel:
    """What :func:`register_and_gate` did: the version as stored now, whether it was new, and
    the gate's decision (None when the bytes were registered before: nothing was decided)."""

    info: ModelInfo
    created: bool
    decision: GateDecision | None


def decide(
    candidate_metrics: Mapping[str, float],
    current_metrics: Mapping[str, float] | None,
    *,
    metric: str = DEFAULT_METRIC,
    margin: float = DEFAULT_MARGIN,
    higher_is_better: bool = True,
) -> GateDecision:
    """Decide whether a candidate with ``candidate_metrics`` replaces the current model.

    Args:
        candidate_metrics: the candidate's held-out metrics.
        current_metrics: the current promoted model's, or None when none is promoted.
        metric: the metric compared.
        margin: how much worse (absolute, >= 0) the candidate may be and still be promoted.
        higher_is_better: False for metrics such as a loss.

    Raises:
        InvalidInputError: malformed metrics, an empty ``metric``, or a negative or non-finite
            ``margin``.
    """
    _check_rule(metric, margin)
    candidate = check_metrics(candidate_metrics)
    current = None if current_metrics is None else check_metrics(current_metrics)
    if metric not in candidate:
        have = ", ".join(sorted(candidate)) or "none"
        return GateDecision(
            False, f"not promoted: the candidate has no {metric!r} metric (it has: {have})"
        )
    new = candidate[metric]
    if current is None:
        return GateDecision(True, f"promoted: no current model ({metric} {new:.6g})")
    if metric not in current:
        return GateDecision(
            True, f"promoted: the current model has no {metric!r} to compare ({metric} {new:.6g})"
        )
    old = current[metric]
    worse_by = (old - new) if higher_is_better else (new - old)
    verdict = f"{metric} {new:.6g} vs current {old:.6g}, margin {margin:.6g}"
    if worse_by > margin + _TOLERANCE:
        return GateDecision(False, f"not promoted: worse by {worse_by:.6g} ({verdict})")
    return GateDecision(True, f"promoted: {verdict}")


def _check_rule(metric: str, margin: float) -> None:
    if not isinstance(metric, str) or not metric:
        raise InvalidInputError(f"metric must be a non-empty string, got {metric!r}")
    if (
        isinstance(margin, bool)
        or not isinstance(margin, int | float)
        or not (math.isfinite(margin) and margin >= 0)
    ):
        raise InvalidInputError(f"margin must be a finite number >= 0, got {margin!r}")


def register_and_gate(
    registry: ModelRegistry,
    onnx_bytes: bytes,
    *,
    parent_version: str | None = None,
    snapshot_key: str | None = None,
    metrics: Mapping[str, float] | None = None,
    metric: str = DEFAULT_METRIC,
    margin: float = DEFAULT_MARGIN,
    higher_is_better: bool = True,
    measured_current: tuple[str, Mapping[str, float]] | None = None,
) -> GatedModel:
    """Register a model file and promote it iff :func:`decide` says so, in one transaction.

    ``measured_current`` is ``(version, metrics)``: the current model scored on the candidate's
    own held-out set. It is the baseline while that version is still the latest promoted (a
    fair comparison on the same frames); otherwise the latest promoted's stored metrics are.

    The file is checked and stored first (outside the transaction); then the version is
    registered, compared with the latest promoted version, and promoted or kept with the
    decision's reason stored as its ``gate_reason``. The decision is logged. Bytes registered
    before return as stored, with no new decision.

    Raises:
        ModelContractError: the bytes break the model contract.
        RegistryConflict: the version or the snapshot is registered with other bytes.
        InvalidInputError: malformed arguments (see :meth:`ModelRegistry.add`, :func:`decide`).
    """
    _check_rule(metric, margin)  # before anything is stored
    staged = registry.stage(onnx_bytes)
    with registry.catalog.atomic() as conn:
        current = registry.latest_promoted(conn=conn)
        added = registry.add(
            staged,
            parent_version=parent_version,
            snapshot_key=snapshot_key,
            metrics=metrics,
            conn=conn,
        )
        if not added.created:
            return GatedModel(added.info, created=False, decision=None)
        baseline: Mapping[str, float] | None = None if current is None else current.metrics
        measured = measured_current
        if current is not None and measured is not None and measured[0] == current.model_version:
            baseline = measured[1]
        decision = decide(
            added.info.metrics,
            baseline,
            metric=metric,
            margin=margin,
            higher_is_better=higher_is_better,
        )
        version = added.info.model_version
        if decision.promote:
            info = registry.promote(version, reason=decision.reason, conn=conn)
        else:
            info = registry.record_decision(version, decision.reason, conn=conn)
    log.info(
        "model %s %s",
        version,
        decision.reason,
        extra={
            "model_version": version,
            "promoted": decision.promote,
            "current_version": None if current is None else current.model_version,
        },
    )
    return GatedModel(info, created=True, decision=decision)
