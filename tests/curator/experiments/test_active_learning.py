"""Pool-based active learning on a small slice of Fashion-MNIST with the real training recipe,
and the benchmark script around it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from curator.data.fashion_mnist import DEBIAN_DIR
from curator.errors import InvalidInputError
from curator.experiments import ExperimentConfig, models_trained, run_experiment

pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(
    not Path(DEBIAN_DIR).is_dir(), reason="Fashion-MNIST not installed (dataset-fashion-mnist)"
)

ROOT = Path(__file__).resolve().parents[3]
SMALL = ExperimentConfig(
    initial=40,
    step=40,
    final=120,
    candidates=300,
    samples_per_round=160,
    min_epochs=1,
    train_limit=600,
    test_limit=300,
)


def test_every_strategy_gets_a_full_curve_from_the_same_first_model() -> None:
    lines: list[str] = []
    strategies = ("random", "entropy", "kcenter", "uncertainty_diversity")
    result = run_experiment(SMALL, strategies, seeds=(0,), progress=lines.append)
    assert len(lines) == models_trained(SMALL, len(strategies), 1) == 1 + 4 * 2 + 1
    curves = {name: result["runs"][name]["0"] for name in strategies}
    assert all(len(c) == 3 and all(0 <= a <= 1 for a in c) for c in curves.values())
    assert len({c[0] for c in curves.values()}) == 1  # one shared first model
    summary = result["strategies"]["uncertainty_diversity"]
    assert summary["labels"] == [40, 80, 120] and summary["n_seeds"] == 1
    assert 0 <= result["ceiling"]["mean"] <= 1
    assert result["default_vs_random"]["at_labels"] == 80
    json.dumps(result)  # JSON-ready


def test_the_same_seed_gives_the_same_curves() -> None:
    config = ExperimentConfig(**{**SMALL.__dict__, "ceiling": False})
    first = run_experiment(config, ("margin",), seeds=(3,))
    again = run_experiment(config, ("margin",), seeds=(3,))
    np.testing.assert_array_equal(first["runs"]["margin"]["3"], again["runs"]["margin"]["3"])


@pytest.mark.parametrize(
    "bad",
    [{"initial": 0}, {"final": 10, "initial": 20}, {"candidates": -1}, {"step": 1.5}],
)
def test_bad_configurations_name_the_field(bad: dict[str, object]) -> None:
    with pytest.raises(InvalidInputError, match=next(iter(bad))):
        ExperimentConfig(**bad)  # type: ignore[arg-type]


def test_unknown_strategies_and_oversized_budgets_are_refused() -> None:
    with pytest.raises(ValueError, match="valid:"):
        run_experiment(SMALL, ("bald",), seeds=(0,))
    with pytest.raises(InvalidInputError, match="exceeds the pool"):
        run_experiment(
            ExperimentConfig(initial=100, step=100, final=700, train_limit=600), ("random",), (0,)
        )


def test_the_benchmark_script_writes_its_json_and_plot(tmp_path: Path) -> None:
    out, plot = tmp_path / "al.json", tmp_path / "al.png"
    flags = [
        "--initial", "40", "--step", "40", "--final", "80", "--candidates", "200",
        "--samples-per-round", "80", "--min-epochs", "1", "--train-limit", "400",
        "--test-limit", "200", "--no-ceiling", "--seeds", "0", "--threads", "1",
        "--strategies", "random", "uncertainty_diversity",
    ]  # fmt: skip
    done = subprocess.run(
        [sys.executable, "benchmarks/bench_active_learning.py", *flags, "--out", str(out),
         "--plot", str(plot)],
        cwd=ROOT, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert set(result["strategies"]) == {"random", "uncertainty_diversity"}
    assert result["seeds"] == [0] and result["machine"]["device"] == "cpu"
    assert "bench_active_learning.py" in result["command"]
    assert set(result["met"]) == set(result["goals"])
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_warm_start_continues_from_the_previous_round_and_cold_start_does_not() -> None:
    config = ExperimentConfig(**{**SMALL.__dict__, "ceiling": False})
    warm = run_experiment(config, ("entropy",), seeds=(1,))["runs"]["entropy"]["1"]
    cold_config = ExperimentConfig(**{**config.__dict__, "warm_start": False})
    cold = run_experiment(cold_config, ("entropy",), seeds=(1,))["runs"]["entropy"]["1"]
    assert warm[0] == cold[0]  # the shared first model
    assert warm[1:] != cold[1:]
