"""The ingest benchmarks run end to end on a small index, so they cannot silently rot.

The figures themselves are the benchmarks' business (``benchmarks/results/``); what is held here
is that each step is timed, the steps nest as the ingest does, and every frame was answered.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]


def test_ingest_phases_times_every_step(tmp_path: Path) -> None:
    out = tmp_path / "phases.json"
    done = subprocess.run(
        [sys.executable, "benchmarks/ingest_phases.py", "--index-size", "3000",
         "--batches", "3", "--check-workers", "1", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert (result["frames"], result["index_size"], result["check_workers"]) == (192, 3000, 1)
    steps = result["us_per_frame"]
    assert all(steps[name]["cpu"] > 0 for name in steps), steps
    ingest = steps["ingest"]["wall"]
    parts = ("checks", "stage_images", "lock_section", "discard_staged")
    assert sum(steps[p]["wall"] for p in parts) <= ingest * 1.01
    inside = ("faiss_search", "faiss_add", "catalog_rows", "outbox_rows")
    assert sum(steps[p]["wall"] for p in inside) <= steps["lock_section"]["wall"] * 1.01
    assert "command" in result and result["machine"]["cpu_count"] >= 1
