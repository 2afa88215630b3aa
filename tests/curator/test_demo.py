from __future__ import annotations

import json
from pathlib import Path

import pytest

from curator.data.fashion_mnist import find_fashion_mnist
from curator.demo import DemoConfig, run_demo
from curator.inference import OnnxModel

pytestmark = pytest.mark.skipif(
    find_fashion_mnist("train") is None or find_fashion_mnist("test") is None,
    reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)",
)


def test_small_demo_runs_the_whole_flow(tmp_path: Path) -> None:
    stages: list[tuple[str, int]] = []
    steps: dict[str, int] = {}

    def progress(description: str, total: int):  # type: ignore[no-untyped-def]
        stages.append((description, total))
        steps[description] = 0

        def tick(n: int) -> None:
            steps[description] += n

        return tick

    config = DemoConfig(objects=120, hold=5, keep_ratio=0.1, label_budget=20, out_dir=tmp_path)
    report = run_demo(config, progress)

    for camera in (report.curated, report.random):
        assert camera.frames_seen == 600
        assert sum(camera.reasons.values()) == 600
        assert 0 < camera.frames_kept < 600 * 0.3
        assert camera.labeled == 20
        assert 0.1 < camera.accuracy <= 1.0
    # the streaming budget holds its keep ratio (within the token bucket's slack)
    assert abs(report.curated.frames_kept - 60) <= 15
    assert report.curated.duplicates_dropped >= 0
    assert all(steps[d] == total for d, total in stages)

    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["curated"]["frames_kept"] == report.curated.frames_kept
    for name in ("seed", "curated", "random"):
        model = OnnxModel(tmp_path / f"{name}.onnx")
        assert model.model_version == f"demo-{name}"
        assert model.has_logits
