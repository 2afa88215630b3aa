"""Edge selector throughput: the full pipeline against bare onnxruntime on the same frames.

The model is a MobileNetV3-small-class network at 224x224 (``curator model init --arch
mobilenet_v3_small``: torchvision's feature layers, randomly initialised with seeded batch-norm
statistics, a 128-d L2-normalised embedding and a 10-class head), built in a subprocess so
torch never counts in this process's memory.

- **bare**: ``bikes.mp4`` decoded once into memory and preprocessed once (untimed); then
  ``session.run`` on batches of ``--batch`` frames, timed, with the same onnxruntime settings.
- **pipeline**: ``edge_selector.run.run`` in a fresh subprocess (what ``edge-selector run``
  does, offline) on ``bikes.mp4`` looped for ``--frames`` frames: decode, resize, quality gates,
  normalisation, inference, scores, novelty, the streaming decision, JPEG encoding and the
  SQLite buffer write of kept frames. Frames per second between the end of the first batch and
  the end of the last (model load and start-up excluded), and the child's peak RSS.
- **decision_ms_50k**: what deciding costs per frame once the model has spoken, with 50,000
  kept embeddings in the recent set: novelty search, scores, value, the budget's decide and
  commit; measured on real embeddings of bikes frames (and jittered copies) in this process.

Two comparisons, each with bare runs just before and after the pipeline: **as shipped** (the
pipeline with the selector's default of ``CPUs - 1`` inference threads, which leaves a core to
decoding and preparing frames; bare onnxruntime with its own default, every core) and **same
threads** (both with ``--same-threads``, default 1). The ratio is pipeline / bare.
``stage_ms_per_frame`` times each stage alone, batch by batch, to show where the time goes.

Run from the repository root::

    python benchmarks/bench_edge.py --out benchmarks/results/bench_edge.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from machine import command_line, describe_machine

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from testkit.videos import bikes_path  # noqa: E402

PIPELINE_CHILD = r"""
import json, sys, threading, time
from edge_selector.run import run
from edge_selector.settings import load_settings

args = json.loads(sys.argv[1])
stamps = []
settings = load_settings(args, None, {})
summary = run(settings, threading.Event(), on_batch=lambda s: stamps.append(
    (time.perf_counter(), s.counts["frames.seen"])))
(t0, n0), (t1, n1) = stamps[0], stamps[-1]
# VmHWM: this process's peak RSS (ru_maxrss would carry the forking parent's over exec)
status = open("/proc/self/status").read().split("VmHWM:")[1].split()
rss = int(status[0]) / 1024.0 if status[1] == "kB" else float("nan")
print(json.dumps({"fps": (n1 - n0) / (t1 - t0), "frames": n1, "counters": summary.counters,
                  "peak_rss_mb": round(rss, 1)}))
"""


def build_model(path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "curator", "model", "init", "--arch", "mobilenet_v3_small",
         "--num-classes", "10", "--embedding-dim", "128", "--input-size", "224",
         "--version", "bench-mnv3s", "--out", str(path)],
        check=True, cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip


def decoded_frames() -> np.ndarray:
    from curator.data.video import read_frames

    with read_frames(bikes_path()) as reader:
        return np.stack([f.image for f in reader])


def bare_fps(
    model_path: Path, frames: np.ndarray, batch: int, n: int, threads: int | None
) -> float:
    from curator.inference import OnnxModel

    model = OnnxModel(model_path, intra_op_threads=threads)
    inputs = np.concatenate(
        [model.preprocess(frames[i : i + batch]) for i in range(0, len(frames), batch)]
    )
    model.run(inputs[:batch])  # warm-up
    done, start = 0, time.perf_counter()
    while done < n:
        i = done % (len(inputs) - batch + 1)
        model.run(inputs[i : i + batch])
        done += batch
    return done / (time.perf_counter() - start)


def pipeline(
    model_path: Path, n: int, batch: int, threads: int | None, work: Path
) -> dict[str, Any]:
    settings = {
        "source": str(bikes_path()), "loop": True, "max_frames": n, "model": str(model_path),
        "buffer": str(work / f"edge-{threads or 'default'}.db"), "batch_size": batch,
        "threads": threads,
        "keep_ratio": 0.1, "max_buffer_mb": 256, "progress": "off",
        # an untrained model sees consecutive frames as near-copies and would keep almost
        # nothing; with the check off about keep_ratio of the frames go through the buffer write
        "duplicate_similarity": 1.5,
    }  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-c", PIPELINE_CHILD, json.dumps(settings)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    out, err = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"pipeline failed:\n{err[-3000:]}")
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def stage_costs(model_path: Path, batch: int, threads: int | None) -> dict[str, float]:
    """Milliseconds per frame of each stage run alone, one after the other, in this process."""
    from curator.data.video import read_frames
    from curator.inference import OnnxModel
    from curator.inference.preprocess import LUMA_WEIGHTS, normalize, resize
    from curator.quality import measure_luma
    from edge_selector.encode import encode_image

    model = OnnxModel(model_path, intra_op_threads=threads)
    meta = model.metadata
    start = time.perf_counter()
    with read_frames(bikes_path()) as reader:
        frames = [f.image for f in reader]
    n = len(frames)
    costs = {"decode_rgb": (time.perf_counter() - start) / n}

    def timed(name: str, work: Any) -> Any:
        start = time.perf_counter()
        out = work()
        costs[name] = (time.perf_counter() - start) / n
        return out

    size, starts = meta.input_size, range(0, n, batch)

    def resized(i: int) -> np.ndarray:
        return np.stack([resize(f[None], size)[0] for f in frames[i : i + batch]])

    pixels = timed("resize", lambda: [resized(i) for i in starts])
    timed("quality", lambda: [measure_luma(g) for p in pixels for g in p @ LUMA_WEIGHTS])
    inputs = timed("normalize", lambda: [normalize(p, meta) for p in pixels])
    model.run(inputs[0])
    timed("inference", lambda: [model.run(x) for x in inputs])
    timed("jpeg_encode", lambda: [encode_image(f) for f in frames])
    return {k: round(v * 1000.0, 3) for k, v in costs.items()}


def decision_ms(model_path: Path, frames: np.ndarray, kept: int, batch: int) -> float:
    from curator.inference import OnnxModel
    from curator.selection import StreamSelector
    from edge_selector.novelty import RecentEmbeddings
    from edge_selector.scoring import ValueModel

    model = OnnxModel(model_path)
    prediction = model.predict(frames, batch_size=batch)
    emb, probs = prediction.embeddings, prediction.probs
    rng = np.random.default_rng(0)
    reps = -(-kept // len(emb))
    pool = np.repeat(emb, reps, axis=0)[:kept]
    pool = pool + 0.05 * rng.standard_normal(pool.shape).astype(np.float32)
    recent = RecentEmbeddings(kept + 1)
    for i in range(0, kept, 1000):
        recent.add(pool[i : i + 1000])
    assert len(recent) == kept and recent.indexed
    value_model, stream = ValueModel(), StreamSelector(0.1)
    queries = emb + 0.02 * rng.standard_normal(emb.shape).astype(np.float32)
    n, start = 0, time.perf_counter()
    for _ in range(4):
        for i in range(0, len(queries) - batch + 1, batch):
            scores = value_model.scores(recent.similarity(queries[i : i + batch]),
                                        probs[i : i + batch])  # fmt: skip
            for value in scores.value:
                stream.commit(stream.decide(float(value)), kept=False)
            n += batch
    return (time.perf_counter() - start) / n * 1000.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=2000, help="frames through the pipeline")
    parser.add_argument("--batch", type=int, default=16, help="inference batch size")
    parser.add_argument("--same-threads", type=int, default=1,
                        help="threads of the same-threads comparison (default 1)")  # fmt: skip
    parser.add_argument("--kept", type=int, default=50_000, help="kept embeddings (decision)")
    parser.add_argument("--out", type=Path, help="write the JSON here")
    args = parser.parse_args()

    import onnxruntime

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model_path = work / "mnv3s.onnx"
        build_model(model_path)
        frames = decoded_frames()
        runs = []
        configs = [("as shipped", None, 0), ("same threads", args.same_threads, args.same_threads)]
        for name, pipeline_threads, bare_threads in configs:
            bare_before = bare_fps(
                model_path, frames, args.batch, args.frames, bare_threads or None
            )
            piped = pipeline(model_path, args.frames, args.batch, pipeline_threads, work)
            bare_after = bare_fps(model_path, frames, args.batch, args.frames, bare_threads or None)
            bare = (bare_before + bare_after) / 2
            runs.append({
                "comparison": name,
                "pipeline_threads": pipeline_threads or "default (CPUs - 1)",
                "bare_threads": bare_threads or "onnxruntime default",
                "bare_fps": round(bare, 1),
                "bare_fps_before_after": [round(bare_before, 1), round(bare_after, 1)],
                "pipeline_fps": round(piped["fps"], 1),
                "ratio": round(piped["fps"] / bare, 3),
                "peak_rss_mb": piped["peak_rss_mb"],
                "pipeline_counters": piped["counters"],
            })  # fmt: skip
            print(json.dumps(runs[-1]), flush=True)
        decision = decision_ms(model_path, frames, args.kept, args.batch)
        stages = stage_costs(model_path, args.batch, args.same_threads)
        model_bytes = model_path.stat().st_size
    main_run = runs[0]
    report = {
        "benchmark": "bench_edge",
        "model": f"mobilenet_v3_small 224x224, 128-d embedding, 10 classes, {model_bytes} bytes",
        "source": "bikes.mp4 (640x272, 250 frames) looped",
        "frames": args.frames,
        "batch": args.batch,
        "pipeline_fps": main_run["pipeline_fps"],
        "bare_fps": main_run["bare_fps"],
        "ratio": main_run["ratio"],
        "decision_ms_50k": round(decision, 4),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
        "stage_ms_per_frame": stages,
        "runs": runs,
        "goals": {"ratio": 0.85, "decision_ms_50k": 0.2, "peak_rss_mb": 400},
        "machine": describe_machine(onnxruntime=onnxruntime.__version__),
        "command": command_line(),
    }
    print(json.dumps({k: report[k] for k in ("pipeline_fps", "bare_fps", "ratio",
                                             "decision_ms_50k", "peak_rss_mb")}))  # fmt: skip
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
