"""The networks curator trains: a convolutional trunk, an L2-normalised embedding and a head.

:func:`build_embedder` returns a torch module whose ``forward(x)`` maps an ``(N, C, H, W)``
float32 batch to ``(embedding, logits)``::

    x -> trunk (convolutions, global average pool) -> features (N, F)
      -> projection Linear(F, D) -> L2-normalise -> embedding (N, D), unit norm per row
      -> head Linear(D, K) -> logits (N, K)

The embedding is L2-normalised inside the network, so a cosine similarity between two
embeddings is their dot product: FAISS inner-product search, near-duplicate thresholds and
novelty all read it directly. The head classifies the normalised embedding, so each logit is a
biased, scaled cosine to a class direction (the weight norms carry the scale).

Architectures (:data:`ARCHS`):

- ``"mobilenet_v3_small"``: torchvision's MobileNetV3-Small (``weights=None``: random
  initialisation, nothing is ever downloaded) up to its 1024-wide pre-classifier layer
  (``Linear(576, 1024)`` + Hardswish, without the dropout), for 224x224 camera frames. About
  1.65 M parameters with ``D = 128`` and 10 classes.
- ``"tiny_cnn"``: three 3x3 conv/BatchNorm/ReLU blocks (32, 64, 128 channels, two 2x2 max
  pools), for Fashion-MNIST at 28x28 and fast tests. About 110 k parameters.

A new network's BatchNorm running statistics are set from one seeded batch of standard-normal
inputs. Without that, a randomly initialised MobileNetV3 in eval mode shrinks its activations
to ~1e-8 and maps every input to the same embedding; with it, an untrained model already gives
input-dependent embeddings (useful for benchmarks and pipeline tests). Training overwrites the
statistics.

torch and torchvision are imported when a network is built (extra ``train``); the module class
is defined then too, so importing this file stays light. The class is local to a function: save
a trained network with ``state_dict()``, not by pickling the module.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from curator._optional import require
from curator.errors import InvalidInputError
from curator.inference.contract import CHANNELS

if TYPE_CHECKING:
    import torch

__all__ = ["ARCHS", "build_embedder"]

ARCHS = ("mobilenet_v3_small", "tiny_cnn")
"""The architecture names :func:`build_embedder` knows."""

_CALIBRATION_BATCH = 8
_MIN_SIZE = {"mobilenet_v3_small": 32, "tiny_cnn": 8}  # both end in a global pool


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidInputError(f"{name} must be a positive integer, got {value!r}")
    return value


def _size(input_size: Any, arch: str) -> tuple[int, int]:
    size = (input_size, input_size) if isinstance(input_size, int) else input_size
    if not isinstance(size, tuple | list) or len(size) != 2:
        raise InvalidInputError(f"input_size must be an integer or (H, W), got {input_size!r}")
    h, w = (_positive_int(v, "input_size") for v in size)
    if min(h, w) < _MIN_SIZE[arch]:
        raise InvalidInputError(
            f"input_size {input_size!r} is too small for {arch}: at least {_MIN_SIZE[arch]} pixels"
        )
    return h, w


@functools.cache
def _embedder_class() -> type[torch.nn.Module]:
    """Define the module class once torch is needed (so this file imports without torch)."""
    require("torch", extra="train")
    import torch

    class Embedder(torch.nn.Module):
        """``trunk -> projection -> L2-normalise -> embedding -> head -> logits``.

        Attributes:
            arch: the architecture name.
            embedding_dim: ``D``.
            num_classes: ``K``.
            channels: ``"rgb"`` or ``"gray"``.
            input_size: ``(H, W)`` the network was built for.
        """

        def __init__(
            self,
            trunk: torch.nn.Module,
            width: int,
            *,
            arch: str,
            embedding_dim: int,
            num_classes: int,
            channels: str,
            input_size: tuple[int, int],
        ) -> None:
            super().__init__()
            self.trunk = trunk
            self.projection = torch.nn.Linear(width, embedding_dim)
            self.head = torch.nn.Linear(embedding_dim, num_classes)
            self.arch = arch
            self.embedding_dim = embedding_dim
            self.num_classes = num_classes
            self.channels = channels
            self.input_size = input_size

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            """``(N, C, H, W)`` float32 -> ``embedding`` ``(N, D)`` (unit rows), ``logits``
            ``(N, K)``."""
            features = self.trunk(x)
            embedding = torch.nn.functional.normalize(self.projection(features), p=2.0, dim=1)
            return embedding, self.head(embedding)

        def extra_repr(self) -> str:
            return (
                f"arch={self.arch!r}, embedding_dim={self.embedding_dim}, "
                f"num_classes={self.num_classes}, channels={self.channels!r}, "
                f"input_size={self.input_size}"
            )

    Embedder.__qualname__ = "Embedder"
    return Embedder


def _mobilenet_v3_small(in_channels: int) -> tuple[torch.nn.Module, int]:
    require("torchvision", extra="train")
    import torch
    from torchvision.models import mobilenet_v3_small

    net = mobilenet_v3_small(weights=None)  # random init: never downloads
    if in_channels != 3:
        first = net.features[0][0]
        net.features[0][0] = torch.nn.Conv2d(
            in_channels,
            first.out_channels,
            first.kernel_size,
            first.stride,
            first.padding,
            bias=False,
        )
        torch.nn.init.kaiming_normal_(net.features[0][0].weight, mode="fan_out")
    pre_classifier = net.classifier[0]  # Linear(576, 1024); [1] is its Hardswish
    trunk = torch.nn.Sequential(
        net.features, net.avgpool, torch.nn.Flatten(1), pre_classifier, net.classifier[1]
    )
    return trunk, int(pre_classifier.out_features)


def _tiny_cnn(in_channels: int) -> tuple[torch.nn.Module, int]:
    import torch

    nn = torch.nn

    def block(c_in: int, c_out: int) -> list[torch.nn.Module]:
        return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]

    trunk = nn.Sequential(
        *block(in_channels, 32),
        nn.MaxPool2d(2),
        *block(32, 64),
        nn.MaxPool2d(2),
        *block(64, 128),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(1),
    )
    return trunk, 128


def _calibrate_batch_norm(trunk: torch.nn.Module, shape: tuple[int, int, int, int]) -> None:
    """Set BatchNorm running statistics from one standard-normal batch (drawn from torch's
    current generator), so that the untrained network in eval mode keeps its activations at
    unit scale and its embedding depends on its input."""
    import torch

    norms = [m for m in trunk.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: one batch sets the statistics exactly
    trunk.train()
    with torch.no_grad():
        trunk(torch.randn(shape))
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum


_TRUNKS: dict[str, Callable[[int], tuple[Any, int]]] = {
    "mobilenet_v3_small": _mobilenet_v3_small,
    "tiny_cnn": _tiny_cnn,
}


def build_embedder(
    arch: str = "mobilenet_v3_small",
    *,
    embedding_dim: int = 128,
    num_classes: int,
    input_size: int | tuple[int, int] = 224,
    channels: str = "rgb",
    seed: int | None = 0,
) -> torch.nn.Module:
    """A randomly initialised network whose ``forward(x)`` returns ``(embedding, logits)``.

    Args:
        arch: one of :data:`ARCHS`.
        embedding_dim: ``D``, the width of the L2-normalised embedding.
        num_classes: ``K``, the number of logits.
        input_size: ``H`` (square) or ``(H, W)`` of the input; the network pools globally, so
            this records what it was built for (the exporter checks it against the metadata)
            and rejects sizes too small for the architecture.
        channels: ``"rgb"`` (3 input channels) or ``"gray"`` (1).
        seed: seeds the initial weights (the same seed gives the same weights); ``None`` draws
            them from torch's global generator. The global generator's state is left as it
            was when a seed is given.

    Returns:
        The network in training mode; ``x`` is ``(N, C, H, W)`` float32, ``embedding``
        ``(N, D)`` with unit rows, ``logits`` ``(N, K)``. Its attributes ``arch``,
        ``embedding_dim``, ``num_classes``, ``channels`` and ``input_size`` say how it was
        built.

    Raises:
        ValueError: an unknown ``arch`` (the message lists the valid ones).
        InvalidInputError: a non-positive size, dimension or class count, an unknown
            ``channels``, an input too small for the architecture, or a bad seed.
        MissingDependencyError: torch or torchvision is not installed.
    """
    if arch not in _TRUNKS:
        raise ValueError(f"unknown arch {arch!r}; valid: {', '.join(ARCHS)}")
    embedding_dim = _positive_int(embedding_dim, "embedding_dim")
    num_classes = _positive_int(num_classes, "num_classes")
    size = _size(input_size, arch)
    if not isinstance(channels, str) or channels not in CHANNELS:
        raise InvalidInputError(f"channels must be one of {', '.join(CHANNELS)}, got {channels!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise InvalidInputError(f"seed must be a non-negative integer or None, got {seed!r}")
    embedder = _embedder_class()
    import torch

    with torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        trunk, width = _TRUNKS[arch](CHANNELS[channels])
        _calibrate_batch_norm(trunk, (_CALIBRATION_BATCH, CHANNELS[channels], *size))
        return embedder(
            trunk,
            width,
            arch=arch,
            embedding_dim=embedding_dim,
            num_classes=num_classes,
            channels=channels,
            input_size=size,
        )
