"""``curator demo --quick`` end to end: real servers, workers, edge selectors and fine-tuning
jobs, so the demo users run first cannot silently rot. About two to four minutes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from curator.data.fashion_mnist import find_fashion_mnist
from curator.demo import QUICK
from curator.demo.report import PLOTS

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        find_fashion_mnist("train") is None or find_fashion_mnist("test") is None,
        reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)",
    ),
]

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(600)
def test_the_quick_demo_runs_the_loop_and_writes_a_consistent_report(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    done = subprocess.run(
        [sys.executable, "-m", "curator", "demo", "--quick", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=540,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "final test accuracy" in done.stdout
    assert (out / "report.html").read_text().startswith("<!doctype html>")
    for plot in PLOTS:
        assert (out / "plots" / plot).read_bytes()[:4] == b"\x89PNG"

    report = json.loads((out / "report.json").read_text())
    rounds, budget = QUICK["rounds"], QUICK["label_budget"]
    per_round = QUICK["devices"] * QUICK["objects"] * QUICK["hold"]
    assert report["seed"]["labels"] == dict.fromkeys(("curated", "random"), QUICK["seed_labels"])
    assert len(report["offline"]) == rounds
    for name in ("curated", "random"):
        assert report["seed"]["jobs"][name]["status"] == "succeeded"
        assert len(report["rounds"][name]) == rounds
        for r in report["rounds"][name]:
            assert r["frames_seen"] == per_round
            assert 0 < r["frames_kept"] <= 0.05 * r["frames_seen"]
            assert r["frames_uploaded"] <= r["frames_kept"]
            assert r["accepted"] + r["duplicates_dropped"] <= r["frames_uploaded"]
            assert 0 < r["labeled"] <= budget
            assert sum(r["per_class_labels"].values()) == r["labeled"]
            assert 0 < r["bytes_uploaded"] < r["raw_bytes"] == per_round * 28 * 28
            assert r["job"]["status"] == "succeeded"
            assert r["model_version"].startswith("ft-")
            assert 0.1 < r["accuracy"] <= 1.0
            assert sum(d["seen"] for d in r["devices"].values()) == r["frames_seen"]
        totals = report["totals"][name]
        assert totals["labeled"] <= budget * rounds
        assert totals["upload_share"] <= 0.05
        assert totals["final_accuracy"] == report["rounds"][name][-1]["accuracy"]
    for cur, rnd in zip(report["rounds"]["curated"], report["rounds"]["random"], strict=True):
        # the random fleet keeps as many of the same frames per camera as the selectors did
        assert {d: v["kept"] for d, v in cur["devices"].items()} == {
            d: v["kept"] for d, v in rnd["devices"].items()
        }
