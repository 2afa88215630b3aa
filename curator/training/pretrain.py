"""Self-supervised pretraining with lightly's SimCLR on unlabeled frames.

:func:`pretrain_simclr` teaches a network's embedding to map two augmented views of the same
frame close together and views of different frames apart (SimCLR, Chen et al. 2020), with
lightly's :class:`~lightly.models.modules.SimCLRProjectionHead` on top of the embedding and
its :class:`~lightly.loss.NTXentLoss`. The head is thrown away afterwards; the trunk and the
embedding projection keep what they learned, and fine-tuning starts from them.

The frames go through :func:`curator.inference.preprocess_frames` once, as on the edge; the
views are made from those tensors with torch ops, batched and cheap on a CPU (:func:`augment`):

- a random crop and zoom (scale 0.6 to 1 of each side) with a random horizontal flip, one
  affine resampling per view (``grid_sample``, bilinear, border padding);
- a random contrast (x 0.6 to 1.4) and brightness (+- 0.4, in normalised units) per view;
- Gaussian noise (sigma 0.05).

Every random draw comes from a :class:`torch.Generator` seeded from ``seed``: the same seed,
weights and frames give the same weights and losses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from curator._optional import require
from curator.errors import InvalidInputError
from curator.inference.contract import ModelMetadata
from curator.inference.preprocess import preprocess_frames
from curator.training.finetune import check_seed

if TYPE_CHECKING:
    import torch

__all__ = ["PretrainResult", "augment", "pretrain_simclr"]

_MIN_SCALE, _MAX_SCALE = 0.6, 1.0
_CONTRAST, _BRIGHTNESS, _NOISE = 0.4, 0.4, 0.05


@dataclass(frozen=True)
class PretrainResult:
    """What :func:`pretrain_simclr` returns.

    Attributes:
        module: the pretrained network (in eval mode), the same object that was passed in.
        epoch_losses: mean NT-Xent loss of each epoch, first epoch first.
    """

    module: torch.nn.Module
    epoch_losses: tuple[float, ...]


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One random view of each preprocessed frame.

    Args:
        x: ``(N, C, H, W)`` float32, as :func:`curator.inference.preprocess_frames` returns.
        generator: the source of every random draw.

    Returns:
        ``(N, C, H, W)`` float32: cropped and zoomed, maybe flipped, contrast, brightness and
        noise changed (see the module docstring).
    """
    import torch

    n = len(x)

    def uniform(low: float, high: float, *shape: int) -> torch.Tensor:
        return low + (high - low) * torch.rand(*shape, generator=generator)

    scale = uniform(_MIN_SCALE, _MAX_SCALE, n)
    shift = (1.0 - scale)[:, None] * uniform(-1.0, 1.0, n, 2)
    flip = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = scale * flip
    theta[:, 1, 1] = scale
    theta[:, :, 2] = shift
    grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    view = torch.nn.functional.grid_sample(
        x, grid, mode="bilinear", padding_mode="border", align_corners=False
    )
    contrast = uniform(1.0 - _CONTRAST, 1.0 + _CONTRAST, n, 1, 1, 1)
    brightness = uniform(-_BRIGHTNESS, _BRIGHTNESS, n, 1, 1, 1)
    noise = _NOISE * torch.randn(view.shape, generator=generator)
    return view * contrast + brightness + noise


def pretrain_simclr(
    module: torch.nn.Module,
    frames: Any,
    metadata: ModelMetadata,
    *,
    epochs: int = 5,
    batch_size: int = 128,
    learning_rate: float = 1e-3,
    temperature: float = 0.5,
    projection_dim: int = 64,
    seed: int = 0,
) -> PretrainResult:
    """Pretrain ``module``'s embedding with SimCLR on unlabeled uint8 frames.

    Args:
        module: a network whose ``forward(x)`` returns ``(embedding, logits)`` (or the
            embedding alone), ``metadata.embedding_dim`` wide; trained in place. Parameters
            named ``head.*`` (the logits head) are not trained.
        frames: ``(N, H, W, C)`` uint8 frames (N >= 2), preprocessed with ``metadata``.
        metadata: the model's metadata: preprocessing and ``embedding_dim``.
        epochs: passes over the frames.
        batch_size: frames per step (each gives two views); a last batch of one is dropped.
        learning_rate: Adam's step size.
        temperature: NT-Xent temperature.
        projection_dim: output width of the projection head.
        seed: seeds the head's weights, the shuffling and the augmentations (torch's global
            generator is left as it was).

    Returns:
        The :class:`PretrainResult`: the module (eval mode) and per-epoch losses.

    Raises:
        InvalidInputError: bad frames or hyper-parameters, fewer than two frames.
        MissingDependencyError: torch or lightly is not installed.
    """
    torch = require("torch", extra="train")
    require("lightly", extra="train")
    from lightly.loss import NTXentLoss
    from lightly.models.modules import SimCLRProjectionHead

    seed = check_seed(seed)
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidInputError(f"{name} must be a non-negative integer, got {value!r}")
    if batch_size < 2:
        raise InvalidInputError(f"batch_size must be at least 2 for SimCLR, got {batch_size}")
    for name, number in (("learning_rate", learning_rate), ("temperature", temperature)):
        if not isinstance(number, int | float) or not number > 0:
            raise InvalidInputError(f"{name} must be a positive number, got {number!r}")
    if (
        isinstance(projection_dim, bool)
        or not isinstance(projection_dim, int)
        or projection_dim < 1
    ):
        raise InvalidInputError(
            f"projection_dim must be a positive integer, got {projection_dim!r}"
        )
    x = torch.from_numpy(preprocess_frames(frames, metadata))
    if len(x) < 2:
        raise InvalidInputError(f"SimCLR needs at least 2 unlabeled frames, got {len(x)}")
    dim = metadata.embedding_dim
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head = SimCLRProjectionHead(dim, dim, projection_dim)
    criterion = NTXentLoss(temperature=float(temperature))
    params = [p for name, p in module.named_parameters() if not name.startswith("head.")]
    optimizer = torch.optim.Adam([*params, *head.parameters()], lr=float(learning_rate))
    generator = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    module.train()
    head.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        total, count = 0.0, 0
        for start in range(0, len(x), batch_size):
            batch = x[order[start : start + batch_size]]
            if len(batch) < 2:
                continue  # one frame has no negatives, and BatchNorm cannot train on it
            views = torch.cat([augment(batch, generator), augment(batch, generator)])
            out = module(views)
            embedding = out[0] if isinstance(out, tuple | list) else out
            z = head(embedding)
            loss = criterion(z[: len(batch)], z[len(batch) :])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(batch)
            count += len(batch)
        losses.append(total / max(count, 1))
    module.eval()
    return PretrainResult(module=module, epoch_losses=tuple(losses))
