"""The committed edge benchmark result carries every figure the issue asks for, and its command."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_edge_result_has_the_figures_machine_and_command() -> None:
    report = json.loads((ROOT / "benchmarks" / "results" / "bench_edge.json").read_text())
    for key in ("pipeline_fps", "bare_fps", "ratio", "decision_ms_50k", "peak_rss_mb"):
        assert isinstance(report[key], float) and report[key] > 0, key
    assert abs(report["ratio"] - report["pipeline_fps"] / report["bare_fps"]) < 0.01
    assert report["machine"]["cpu_count"] >= 1
    assert report["command"].startswith(".venv/bin/python benchmarks/bench_edge.py")
    assert {r["comparison"] for r in report["runs"]} == {"as shipped", "same threads"}
