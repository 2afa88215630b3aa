"""Simulated cameras: Fashion-MNIST training images as the objects a camera sees.

A camera round is a sequence of objects; each object stays in view for ``hold`` frames that
differ by a small shift, a light change and sensor noise (real near-duplicates). Each camera
sees mostly a few *common* classes: some that the whole fleet sees a lot of and one of its own;
which ones moves on every round (drift); the rest of its objects come from the other classes,
rarely (a long tail). The frames are
written as PNG files, one folder per camera and round, for ``edge-selector run --source``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from curator.demo.config import DemoConfig

__all__ = ["CameraRound", "StreamPool", "class_mix", "make_round", "write_frames"]

UInt8 = npt.NDArray[np.uint8]
NUM_CLASSES = 10


def class_mix(config: DemoConfig, device: int, round_index: int) -> npt.NDArray[np.float64]:
    """The probability of each class for one camera in one round, shape ``(10,)``.

    ``common_share`` goes to the camera's common classes: ``common_classes - 1`` classes every
    camera of the fleet sees a lot of (the scene's usual objects), plus one of the camera's own;
    they all move on by one class each round (drift). The other classes share the rest: the
    long tail, rare everywhere.
    """
    start = config.first_common_class + round_index
    shared = config.common_classes - 1
    common = [(start + k) % NUM_CLASSES for k in range(shared)]
    own = (start + shared + device) % NUM_CLASSES
    if own not in common:
        common.append(own)
    rare = NUM_CLASSES - len(common)
    mix = np.full(NUM_CLASSES, (1.0 - config.common_share) / rare)
    mix[common] = config.common_share / len(common)
    return mix


class StreamPool:
    """The training images no camera has shown yet, by class; each object is shown once.

    Args:
        labels: ``(N,)`` classes of the candidate images.
        indices: ``(N,)`` their indices in the training set.
        rng: the generator the draws use.
    """

    def __init__(
        self, labels: UInt8, indices: npt.NDArray[np.int64], rng: np.random.Generator
    ) -> None:
        self._left = {c: list(rng.permutation(indices[labels == c])) for c in range(NUM_CLASSES)}
        self._rng = rng

    def draw(self, mix: npt.NDArray[np.float64], count: int) -> npt.NDArray[np.int64]:
        """``count`` image indices whose classes follow ``mix`` (a class that runs out is
        replaced by a class that has images left).

        Raises:
            ValueError: the pool has fewer than ``count`` images left.
        """
        picked: list[int] = []
        for c in self._rng.choice(NUM_CLASSES, size=count, p=mix):
            cls = int(c)
            if not self._left[cls]:
                cls = max(self._left, key=lambda k: len(self._left[k]))
                if not self._left[cls]:
                    raise ValueError(f"the stream pool ran out after {len(picked)} objects")
            picked.append(int(self._left[cls].pop()))
        return np.array(picked, dtype=np.int64)


@dataclass(frozen=True)
class CameraRound:
    """One camera's frames in one round, with the truth the stand-in labelers use.

    Attributes:
        device: the camera's index.
        round_index: the round, from 0.
        frames: ``(F, 28, 28)`` uint8 frames in capture order.
        labels: ``(F,)`` the class of each frame's object.
        objects: ``(F,)`` the training-set index of each frame's object.
    """

    device: int
    round_index: int
    frames: UInt8
    labels: UInt8
    objects: npt.NDArray[np.int64]


def _view(image: UInt8, rng: np.random.Generator) -> UInt8:
    """One frame of an object in view: now and then a pixel of drift, a light change of up to
    10% and sensor noise (sigma 5 grey levels)."""
    dy, dx = rng.choice([-1, 0, 1], size=2, p=[0.1, 0.8, 0.1])
    shifted = np.zeros_like(image)
    h, w = image.shape
    shifted[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = image[
        max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    frame = shifted * rng.uniform(0.9, 1.1) + rng.normal(0.0, 5.0, image.shape)
    return np.clip(frame.round(), 0, 255).astype(np.uint8)


def make_round(
    config: DemoConfig,
    images: UInt8,
    labels: UInt8,
    pool: StreamPool,
    device: int,
    round_index: int,
    rng: np.random.Generator,
) -> CameraRound:
    """Draw a camera's objects for a round and film each for ``config.hold`` frames."""
    objects = pool.draw(class_mix(config, device, round_index), config.objects)
    frames = np.stack([_view(images[i], rng) for i in objects for _ in range(config.hold)])
    per_frame = np.repeat(objects, config.hold)
    return CameraRound(device, round_index, frames, labels[per_frame], per_frame)


def write_frames(frames: UInt8, folder: Path) -> list[Path]:
    """Write ``frames`` as ``000000.png``, ``000001.png``, ... into ``folder`` (created).

    Returns:
        The files, in capture order.
    """
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, frame in enumerate(frames):
        path = folder / f"{i:06d}.png"
        Image.fromarray(frame).save(path)
        paths.append(path)
    return paths
