"""The library flow on Fashion-MNIST, end to end, in one process.

This is what ``curator demo`` runs until the fleet demo (real server and edge processes) exists:

1. fit a seed model on a small labeled seed set (a PCA embedding learned from unlabeled frames
   and a softmax-regression head), export it to ONNX through :mod:`curator.inference.build`;
2. simulate a camera: each object held in view for several frames under flickering light and
   sensor noise (real near-duplicates);
3. run every frame through onnxruntime (:class:`curator.inference.OnnxModel`), score it
   (entropy, novelty against the frames already kept, quality), and keep it or not with the
   streaming budget (:class:`curator.selection.StreamSelector`); a second camera keeps frames
   uniformly at random at the same ratio, as the baseline;
4. remove near-duplicates across what was kept, as the server does on arrival, with FAISS
   (:class:`curator.index.FaissIndex`);
5. spend the same label budget on each pool, with the default pool strategy for the curated pool
   and at random for the baseline, retrain the head, export a new ONNX model and measure both on
   the Fashion-MNIST test set through onnxruntime.

Everything runs on real components; only the labeling team is stood in for by the data set's
labels. Needs the ``edge``, ``server`` and ``train`` extras (onnxruntime, FAISS, onnx).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from curator.data.fashion_mnist import CLASS_NAMES, load_fashion_mnist
from curator.diversity import l2_normalize, max_similarity
from curator.errors import InvalidInputError
from curator.index import FaissIndex
from curator.inference.build import linear_model
from curator.inference.contract import ModelMetadata
from curator.inference.model import OnnxModel
from curator.quality import measure
from curator.selection import DEFAULT_STRATEGY, StreamSelector, select
from curator.uncertainty import entropy, softmax

__all__ = ["DemoConfig", "DemoReport", "run_demo"]

Progress = Callable[[str, int], Callable[[int], None]]
UInt8 = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class DemoConfig:
    """What the demo runs; every field is a ``curator demo`` flag.

    Attributes:
        seed: seeds every random choice; the same seed gives the same report.
        seed_labels: labeled images the seed model is trained on.
        objects: objects each camera sees; each is held for ``hold`` frames.
        hold: frames per object (near-duplicates of each other).
        keep_ratio: fraction of frames the streaming budget keeps.
        label_budget: labels bought for each pool after the stream.
        embedding_dim: width of the PCA embedding.
        dedup_threshold: cosine similarity at or above which kept frames are duplicates.
        out_dir: where the models and ``report.json`` are written.
    """

    seed: int = 0
    seed_labels: int = 200
    objects: int = 1500
    hold: int = 8
    keep_ratio: float = 0.05
    label_budget: int = 300
    embedding_dim: int = 64
    dedup_threshold: float = 0.97
    out_dir: Path = Path("demo-output")

    def __post_init__(self) -> None:
        for name in ("seed_labels", "objects", "hold", "label_budget", "embedding_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise InvalidInputError(f"{name} must be a positive integer, got {value!r}")
        if not 0 < self.keep_ratio <= 1:
            raise InvalidInputError(f"keep_ratio must lie in (0, 1], got {self.keep_ratio}")
        if not -1 <= self.dedup_threshold <= 1:
            raise InvalidInputError(
                f"dedup_threshold must lie in [-1, 1], got {self.dedup_threshold}"
            )
        if self.seed_labels + 2 * self.objects > 50_000:
            raise InvalidInputError(
                "seed_labels + 2 * objects must leave 10,000 Fashion-MNIST training images "
                f"for the embedding, got {self.seed_labels} + 2 * {self.objects}"
            )


@dataclass
class CameraStats:
    """What one simulated camera saw and kept."""

    frames_seen: int = 0
    frames_kept: int = 0
    duplicates_dropped: int = 0
    labeled: int = 0
    accuracy: float = 0.0
    reasons: dict[str, int] = field(default_factory=dict)


@dataclass
class DemoReport:
    """The outcome, written to ``report.json``."""

    config: dict[str, Any]
    seed_accuracy: float
    curated: CameraStats
    random: CameraStats
    seconds: float

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, default=str)


def _metadata(version: str, dim: int) -> ModelMetadata:
    return ModelMetadata(
        model_version=version,
        class_names=tuple(CLASS_NAMES),
        embedding_dim=dim,
        input_size=(28, 28),
        channels="gray",
    )


def _fit_head(
    features: npt.NDArray[np.float32], labels: UInt8, *, steps: int = 300, l2: float = 1e-3
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Softmax regression by full-batch gradient descent with Adam; returns ``(W, b)``."""
    n, d = features.shape
    k = len(CLASS_NAMES)
    x = features.astype(np.float64)
    y = np.eye(k)[labels]
    params = [np.zeros((d, k)), np.zeros(k)]
    moments = [[np.zeros_like(p), np.zeros_like(p)] for p in params]
    for t in range(1, steps + 1):
        grad_logits = (softmax(x @ params[0] + params[1]) - y) / n
        grads = [x.T @ grad_logits + l2 * params[0], grad_logits.sum(axis=0)]
        for p, g, m in zip(params, grads, moments, strict=True):
            m[0] = 0.9 * m[0] + 0.1 * g
            m[1] = 0.999 * m[1] + 0.001 * g * g
            p -= 0.05 * (m[0] / (1 - 0.9**t)) / (np.sqrt(m[1] / (1 - 0.999**t)) + 1e-8)
    return params[0].astype(np.float32), params[1].astype(np.float32)


class _Embedder:
    """A PCA embedding of pixels in [0, 1], learned from unlabeled frames."""

    def __init__(self, unlabeled: UInt8, dim: int) -> None:
        x = unlabeled.reshape(len(unlabeled), -1).astype(np.float64) / 255.0
        self.mean = x.mean(axis=0)
        _, _, vt = np.linalg.svd(x - self.mean, full_matrices=False)
        self.weight = vt[:dim].T.astype(np.float32)  # (784, dim)
        self.bias = (-self.mean @ vt[:dim].T).astype(np.float32)

    def __call__(self, images: UInt8) -> npt.NDArray[np.float32]:
        x = images.reshape(len(images), -1).astype(np.float32) / 255.0
        return x @ self.weight + self.bias  # type: ignore[no-any-return]

    def export(self, head: tuple[Any, Any], version: str, path: Path) -> OnnxModel:
        data = linear_model(
            self.weight, self.bias, head[0], head[1], _metadata(version, self.weight.shape[1])
        )
        path.write_bytes(data)
        return OnnxModel(path)


def _camera(
    images: UInt8, order: npt.NDArray[np.int64], hold: int, rng: np.random.Generator
) -> Iterator[tuple[int, UInt8]]:
    """Each object held in view for ``hold`` frames under flickering light and sensor noise."""
    for obj in order:
        for _ in range(hold):
            gain = rng.uniform(0.9, 1.1)
            frame = images[obj] * gain + rng.normal(0, 5, images[obj].shape)
            yield int(obj), np.clip(frame.round(), 0, 255).astype(np.uint8)


def frame_value(uncertainty: float, novelty: float) -> float:
    """Uncertainty weighted by novelty: a near-copy of a kept frame is worth little."""
    return float(uncertainty * min(max(novelty, 0.0), 1.0))


Choose = Callable[[float, float], tuple[bool, str]]
"""``choose(value, now) -> (keep, reason)``: one camera's keep rule."""


@dataclass
class KeptFrames:
    """What a camera kept, with what the model said about each frame when it was kept."""

    objects: list[int] = field(default_factory=list)
    images: list[UInt8] = field(default_factory=list)
    embeddings: list[npt.NDArray[np.float32]] = field(default_factory=list)
    probs: list[npt.NDArray[np.float32]] = field(default_factory=list)


def _stream(
    model: OnnxModel,
    frames: Iterator[tuple[int, UInt8]],
    total: int,
    choose: Choose,
    tick: Callable[[int], None],
    batch: int = 256,
) -> tuple[KeptFrames, CameraStats]:
    """Score frames batch by batch and keep what ``choose`` says; novelty is measured against
    every frame kept so far, those of the current batch included."""
    stats = CameraStats()
    kept = KeptFrames()
    kept_unit = np.empty((0, model.embedding_dim), np.float32)
    clock = 0.0
    while stats.frames_seen < total:
        chunk = [f for _, f in zip(range(batch), frames, strict=False)]
        imgs = np.stack([f for _, f in chunk])
        pred = model.predict(imgs[..., None], batch_size=batch)
        probs = pred.probs
        unc = entropy(probs)
        unit = l2_normalize(pred.embeddings)
        base_sim, _ = max_similarity(unit, kept_unit)
        fresh: list[npt.NDArray[np.float32]] = []
        for j, (obj, image) in enumerate(chunk):
            clock += 1 / 30  # a 30 fps camera
            sim = float(base_sim[j]) if len(kept_unit) else -1.0
            if fresh:
                sim = max(sim, float((np.stack(fresh) @ unit[j]).max()))
            novelty = 1.0 - sim if sim > -1.0 else 1.0
            dark = measure(image).underexposed > 0.98
            keep, reason = choose(0.0 if dark else frame_value(unc[j], novelty), clock)
            stats.reasons[reason] = stats.reasons.get(reason, 0) + 1
            if keep:
                kept.objects.append(obj)
                kept.images.append(image)
                kept.embeddings.append(pred.embeddings[j])
                kept.probs.append(probs[j])
                fresh.append(unit[j])
        if fresh:
            kept_unit = np.vstack([kept_unit, np.stack(fresh)])
        stats.frames_seen += len(chunk)
        tick(len(chunk))
    stats.frames_kept = len(kept.objects)
    return kept, stats


def _budgeted(selector: StreamSelector) -> Choose:
    """Keep by the streaming budget; every decision is committed (storing cannot fail here)."""

    def choose(value: float, now: float) -> tuple[bool, str]:
        decision = selector.decide(value, now)
        selector.commit(decision, decision.keep)
        return decision.keep, decision.reason

    return choose


def _uniform(keep_ratio: float, rng: np.random.Generator) -> Choose:
    """Keep each frame with probability ``keep_ratio``, whatever its value (the baseline)."""

    def choose(value: float, now: float) -> tuple[bool, str]:
        keep = bool(rng.random() < keep_ratio)
        return keep, "random" if keep else "not_drawn"

    return choose


def _dedup(embeddings: list[npt.NDArray[np.float32]], threshold: float) -> npt.NDArray[np.int64]:
    """What the server does on arrival: a frame is a duplicate when the FAISS index already
    holds one with cosine similarity >= threshold; otherwise it is accepted and indexed."""
    index = FaissIndex(len(embeddings[0]))
    accepted: list[int] = []
    for i, vector in enumerate(embeddings):
        sims, _ = index.search(vector[None], 1)
        if sims[0, 0] < threshold:
            index.add([i], vector[None])
            accepted.append(i)
    return np.array(accepted, dtype=np.int64)


def _accuracy(model: OnnxModel, images: UInt8, labels: UInt8) -> float:
    probs = model.predict(images[..., None], batch_size=1024).probs
    return float((probs.argmax(axis=1) == labels).mean())


def run_demo(config: DemoConfig, progress: Progress) -> DemoReport:
    """Run the flow described in the module docstring.

    Args:
        config: what to run.
        progress: ``progress(description, total)`` returns a function to call with each step's
            count; the CLI passes a progress bar.

    Raises:
        DatasetError: Fashion-MNIST is not available.
    """
    started = time.perf_counter()
    rng = np.random.default_rng(config.seed)
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train_x, train_y = load_fashion_mnist("train")
    test_x, test_y = load_fashion_mnist("test")
    order = rng.permutation(len(train_x))
    seed_idx = order[: config.seed_labels]
    streams = order[config.seed_labels :].reshape(-1)
    curated_objects = streams[: config.objects]
    random_objects = streams[config.objects : 2 * config.objects]

    embedder = _Embedder(train_x[streams[2 * config.objects :][:10_000]], config.embedding_dim)
    seed_head = _fit_head(embedder(train_x[seed_idx]), train_y[seed_idx])
    seed_model = embedder.export(seed_head, "demo-seed", out / "seed.onnx")
    seed_accuracy = _accuracy(seed_model, test_x, test_y)

    total = config.objects * config.hold
    selector = StreamSelector(config.keep_ratio, window=500)
    tick = progress("curated camera", total)
    curated_frames = _camera(train_x, curated_objects, config.hold, rng)
    cur, curated = _stream(seed_model, curated_frames, total, _budgeted(selector), tick)
    tick = progress("random camera", total)
    baseline = _uniform(config.keep_ratio, np.random.default_rng(config.seed + 1))
    random_frames = _camera(train_x, random_objects, config.hold, rng)
    rnd, random_stats = _stream(seed_model, random_frames, total, baseline, tick)

    reps = _dedup(cur.embeddings, config.dedup_threshold)
    curated.duplicates_dropped = len(cur.objects) - len(reps)

    tick = progress("label and retrain", 2)
    picked = select(
        DEFAULT_STRATEGY,
        k=config.label_budget,
        rng=config.seed,
        embeddings=np.stack([cur.embeddings[i] for i in reps]),
        probs=np.stack([cur.probs[i] for i in reps]),
    )
    drawn = np.random.default_rng(config.seed + 2).permutation(len(rnd.objects))
    labeled = {
        "curated": (curated, [int(reps[i]) for i in picked], cur),
        "random": (random_stats, drawn[: config.label_budget].tolist(), rnd),
    }
    for name, (stats, chosen, kept) in labeled.items():
        # the labeling team labels the kept frames; the data set's labels stand in for them
        images = np.concatenate([train_x[seed_idx], np.stack([kept.images[i] for i in chosen])])
        labels = np.concatenate([train_y[seed_idx], train_y[[kept.objects[i] for i in chosen]]])
        model = embedder.export(
            _fit_head(embedder(images), labels), f"demo-{name}", out / f"{name}.onnx"
        )
        stats.labeled = len(chosen)
        stats.accuracy = _accuracy(model, test_x, test_y)
        tick(1)

    report = DemoReport(
        config={k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()},
        seed_accuracy=seed_accuracy,
        curated=curated,
        random=random_stats,
        seconds=time.perf_counter() - started,
    )
    (out / "report.json").write_text(report.to_json())
    return report
