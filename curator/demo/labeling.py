"""The labeling team, stood in for by the data set's labels.

- The curated fleet's labeler works like a person at the labeling page: lease the next tasks the
  server chose (its pool strategy), look at each frame's image, answer its class. "Looking" is
  :class:`Oracle`: the image is matched to the nearest frame the cameras captured, whose object's
  Fashion-MNIST label is the answer.
- The random fleet's labeler labels frames drawn uniformly at random from what its server
  accepted and nobody labeled yet.

Both go through the labeling API (``POST /v1/labels``) with a labeler token, the same budget.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from curator.client import CuratorClient
from curator.data.fashion_mnist import CLASS_NAMES

__all__ = ["LabelingRound", "Oracle", "label_at_random", "label_leased_tasks"]

UInt8 = npt.NDArray[np.uint8]


class Oracle:
    """Knows the class of every frame the cameras captured, and finds a frame from its image."""

    def __init__(self) -> None:
        self._pixels: list[npt.NDArray[np.float32]] = []
        self._labels: list[UInt8] = []
        self._matrix: npt.NDArray[np.float32] | None = None

    def add(self, frames: UInt8, labels: UInt8) -> None:
        """Remember ``(F, 28, 28)`` frames and their ``(F,)`` classes."""
        self._pixels.append(frames.reshape(len(frames), -1).astype(np.float32))
        self._labels.append(np.asarray(labels, dtype=np.uint8))
        self._matrix = None

    def label_of(self, image: bytes) -> int:
        """The class of the captured frame nearest (L2 on pixels) to the encoded ``image``."""
        from PIL import Image

        with Image.open(io.BytesIO(image)) as opened:
            gray = opened.convert("L")
            if gray.size != (28, 28):
                gray = gray.resize((28, 28), Image.Resampling.BILINEAR)
            pixels = np.asarray(gray, dtype=np.float32).reshape(-1)
        if self._matrix is None:
            self._matrix = np.concatenate(self._pixels)
            self._norms = (self._matrix**2).sum(axis=1)
            self._all_labels = np.concatenate(self._labels)
        distances = self._norms - 2.0 * (self._matrix @ pixels)
        return int(self._all_labels[int(distances.argmin())])


@dataclass
class LabelingRound:
    """What a labeler did in a round: labels given, and tasks leased (the curated labeler)."""

    labeled: int = 0
    leased: int = 0
    per_class: dict[str, int] = field(default_factory=dict)


def label_leased_tasks(api: CuratorClient, oracle: Oracle, budget: int) -> LabelingRound:
    """Lease tasks in the server's order and label each until ``budget`` labels are given or
    the queue is empty."""
    done = LabelingRound()
    while done.labeled < budget:
        tasks = api.lease_tasks(count=min(100, budget - done.labeled), lease_s=600.0)
        if not tasks:
            break
        done.leased += len(tasks)
        for task in tasks:
            name = CLASS_NAMES[oracle.label_of(api.frame_image(task["frame_id"]))]
            api.submit_label(task["frame_id"], name, lease_id=task["lease_id"])
            done.labeled += 1
            done.per_class[name] = done.per_class.get(name, 0) + 1
    return done


def label_at_random(
    api: CuratorClient, pool: dict[str, int], budget: int, rng: np.random.Generator
) -> LabelingRound:
    """Label ``budget`` frames drawn uniformly from ``pool`` (frame id -> class, the accepted
    and still unlabeled frames); the labeled ones leave the pool."""
    done = LabelingRound()
    ids = sorted(pool)
    for i in rng.permutation(len(ids))[:budget]:
        frame_id = ids[int(i)]
        name = CLASS_NAMES[pool.pop(frame_id)]
        api.submit_label(frame_id, name)
        done.labeled += 1
        done.per_class[name] = done.per_class.get(name, 0) + 1
    return done
