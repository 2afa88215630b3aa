"""The promotion gate: decide() table-driven (margin boundaries included) and
register_and_gate() on a real registry (stored reason, promotion, idempotency, logging)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from testkit.models import linear_onnx

from curator.errors import InvalidInputError, ModelContractError
from server.registry import ModelRegistry, decide, register_and_gate

# (candidate, current, margin, promote, reason fragment)
CASES: list[tuple[dict[str, float], dict[str, float] | None, float, bool, str]] = [
    ({"accuracy": 0.5}, None, 0.02, True, "no current model"),
    ({"accuracy": 0.90}, {"accuracy": 0.80}, 0.02, True, "accuracy 0.9 vs current 0.8"),
    ({"accuracy": 0.80}, {"accuracy": 0.80}, 0.02, True, "promoted"),
    ({"accuracy": 0.79}, {"accuracy": 0.80}, 0.02, True, "promoted"),
    ({"accuracy": 0.88}, {"accuracy": 0.90}, 0.02, True, "margin 0.02"),  # exactly the margin
    ({"accuracy": 0.8799}, {"accuracy": 0.90}, 0.02, False, "worse by 0.0201"),
    ({"accuracy": 0.50}, {"accuracy": 0.90}, 0.02, False, "not promoted: worse by 0.4"),
    ({"accuracy": 0.89}, {"accuracy": 0.90}, 0.0, False, "worse by 0.01"),
    ({"accuracy": 0.90}, {"accuracy": 0.90}, 0.0, True, "promoted"),
    ({"accuracy": 0.10}, {"accuracy": 0.90}, 0.8, True, "promoted"),  # exactly the margin
    ({"accuracy": 0.0999}, {"accuracy": 0.90}, 0.8, False, "not promoted"),
    ({"loss": 0.3}, {"accuracy": 0.9}, 0.02, False, "candidate has no 'accuracy' metric"),
    ({}, None, 0.02, False, "(it has: none)"),
    ({"accuracy": 0.3}, {"loss": 0.1}, 0.02, True, "current model has no 'accuracy'"),
    ({"accuracy": 0.3}, {}, 0.02, True, "current model has no 'accuracy'"),
]


@pytest.mark.parametrize(("candidate", "current", "margin", "promote", "reason"), CASES)
def test_decide(
    candidate: dict[str, float],
    current: dict[str, float] | None,
    margin: float,
    promote: bool,
    reason: str,
) -> None:
    decision = decide(candidate, current, margin=margin)
    assert decision.promote is promote
    assert reason in decision.reason
    assert decision.reason.startswith("promoted" if promote else "not promoted")


@pytest.mark.parametrize(
    ("candidate", "current", "promote"),
    [(0.52, 0.50, True), (0.5201, 0.50, False), (0.40, 0.50, True), (0.6, 0.5, False)],
)
def test_decide_when_lower_is_better(candidate: float, current: float, promote: bool) -> None:
    decision = decide({"loss": candidate}, {"loss": current}, metric="loss", higher_is_better=False)
    assert decision.promote is promote


def test_decide_uses_the_named_metric() -> None:
    candidate = {"accuracy": 0.95, "f1": 0.10}
    current = {"accuracy": 0.80, "f1": 0.90}
    assert decide(candidate, current).promote
    assert not decide(candidate, current, metric="f1").promote


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"margin": -0.01}, "margin"),
        ({"margin": float("nan")}, "margin"),
        ({"margin": True}, "margin"),
        ({"metric": ""}, "metric"),
    ],
)
def test_decide_refuses_malformed_rules(kwargs: Any, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        decide({"accuracy": 1.0}, None, **kwargs)


def test_decide_refuses_malformed_metrics() -> None:
    with pytest.raises(InvalidInputError, match="finite"):
        decide({"accuracy": float("inf")}, None)
    with pytest.raises(InvalidInputError, match="number"):
        decide({"accuracy": 0.5}, {"accuracy": "high"})  # type: ignore[dict-item]


def test_register_and_gate_promotes_keeps_and_records_why(
    registry: ModelRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="server.registry.gate")
    first = register_and_gate(
        registry, linear_onnx(version="m1", seed=1), snapshot_key="s1", metrics={"accuracy": 0.8}
    )
    assert first.created and first.info.promoted and first.decision is not None
    assert registry.entry("m1").gate_reason == first.decision.reason
    assert "no current model" in first.decision.reason

    broken = register_and_gate(
        registry,
        linear_onnx(version="m2-shuffled", seed=2),
        parent_version="m1",
        snapshot_key="s2",
        metrics={"accuracy": 0.25},
    )
    assert broken.created and not broken.info.promoted
    assert broken.decision is not None and not broken.decision.promote
    assert registry.entry("m2-shuffled").gate_reason == broken.decision.reason
    assert registry.latest_promoted() == registry.get("m1")  # devices keep the current model
    assert registry.get("m2-shuffled").parent_version == "m1"  # kept, not promoted

    better = register_and_gate(
        registry, linear_onnx(version="m3", seed=3), snapshot_key="s3", metrics={"accuracy": 0.79}
    )
    assert better.info.promoted
    latest = registry.latest_promoted()
    assert latest is not None and latest.model_version == "m3"

    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("model m2-shuffled not promoted: worse by 0.55") for m in messages)
    assert any(m.startswith("model m3 promoted") for m in messages)


def test_register_and_gate_is_idempotent(registry: ModelRegistry) -> None:
    data = linear_onnx(version="m1", seed=1)
    first = register_and_gate(registry, data, metrics={"accuracy": 0.8})
    again = register_and_gate(registry, data, metrics={"accuracy": 0.1})
    assert again.created is False and again.decision is None
    assert again.info == first.info
    assert len(registry.list()) == 1


def test_register_and_gate_refuses_before_storing(registry: ModelRegistry) -> None:
    with pytest.raises(InvalidInputError, match="margin"):
        register_and_gate(registry, linear_onnx(version="m1"), margin=-1.0)
    with pytest.raises(ModelContractError):
        register_and_gate(registry, b"not onnx at all")
    assert registry.list() == []
