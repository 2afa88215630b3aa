"""Fixtures for the training tests: a small real Fashion-MNIST subset and a one-thread torch."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytest

from curator.data.fashion_mnist import CLASS_NAMES, DEBIAN_DIR, load_fashion_mnist

CLASSES = (0, 1, 7, 8)  # T-shirt/top, Trouser, Sneaker, Bag: four classes, chance is 0.25


@dataclass(frozen=True)
class Subset:
    """A class-balanced slice of Fashion-MNIST's test split, as (N, 28, 28, 1) uint8 frames."""

    frames: np.ndarray
    labels: np.ndarray
    held_out_frames: np.ndarray
    held_out_labels: np.ndarray
    unlabeled: np.ndarray
    class_names: tuple[str, ...]


@pytest.fixture(scope="session")
def fmnist() -> Subset:
    """100 training frames per class, 50 held-out per class and 256 unlabeled frames, disjoint."""
    if not (DEBIAN_DIR / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(
            f"Fashion-MNIST is not installed in {DEBIAN_DIR} (apt-get install "
            "dataset-fashion-mnist)"
        )
    images, labels = load_fashion_mnist("test")
    rng = np.random.default_rng(0)
    train, held = [], []
    for c in CLASSES:
        idx = rng.permutation(np.flatnonzero(labels == c))
        train.append(idx[:100])
        held.append(idx[100:150])
    train_idx = rng.permutation(np.concatenate(train))
    held_idx = rng.permutation(np.concatenate(held))
    used = np.zeros(len(labels), dtype=bool)
    used[train_idx] = used[held_idx] = True
    unlabeled_idx = rng.choice(np.flatnonzero(~used), 256, replace=False)
    remap = np.full(10, -1, dtype=np.int64)
    remap[list(CLASSES)] = np.arange(len(CLASSES))
    return Subset(
        frames=images[train_idx, ..., None],
        labels=remap[labels[train_idx]],
        held_out_frames=images[held_idx, ..., None],
        held_out_labels=remap[labels[held_idx]],
        unlabeled=images[unlabeled_idx, ..., None],
        class_names=tuple(CLASS_NAMES[c] for c in CLASSES),
    )


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Run torch on one thread: steadier timings on a shared 2-core machine; restored after."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
