"""pretrain_simclr and augment: SimCLR with lightly on real unlabeled Fashion-MNIST frames."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from curator.errors import InvalidInputError
from curator.inference import ModelMetadata, preprocess_frames
from curator.training.backbones import build_embedder
from curator.training.pretrain import augment, pretrain_simclr

torch = pytest.importorskip("torch")
pytest.importorskip("lightly")

pytestmark = pytest.mark.usefixtures("one_thread")

META = ModelMetadata("ssl-test", ("a", "b", "c", "d"), 32, (28, 28), "gray", (0.286,), (0.353,))


def _fresh(seed: int = 0) -> torch.nn.Module:
    return build_embedder(
        "tiny_cnn", embedding_dim=32, num_classes=4, input_size=28, channels="gray", seed=seed
    )


def test_augment_makes_different_seeded_views(fmnist: Any) -> None:
    x = torch.from_numpy(preprocess_frames(fmnist.unlabeled[:16], META))
    a = augment(x, torch.Generator().manual_seed(0))
    b = augment(x, torch.Generator().manual_seed(0))
    c = augment(x, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and a.dtype == torch.float32
    assert torch.isfinite(a).all()
    assert torch.equal(a, b)  # the generator is the only source of randomness
    assert not torch.allclose(a, c) and not torch.allclose(a, x)
    # a view still looks like its frame more than like the other frames (on average)
    flat_a, flat_x = a.flatten(1), x.flatten(1)
    sim = torch.nn.functional.cosine_similarity(flat_a[:, None], flat_x[None], dim=2)
    assert sim.diagonal().mean() > sim[~torch.eye(16, dtype=torch.bool)].mean()


def test_simclr_lowers_its_loss_and_leaves_the_head_alone(fmnist: Any) -> None:
    module = _fresh()
    head_before = module.head.weight.detach().clone()
    trunk_before = module.trunk[0].weight.detach().clone()
    result = pretrain_simclr(module, fmnist.unlabeled, META, epochs=4, batch_size=64, seed=0)
    losses = result.epoch_losses
    print("SimCLR epoch losses", losses)
    assert len(losses) == 4 and all(np.isfinite(losses))
    assert losses[-1] < losses[0] - 0.05
    assert result.module is module and not module.training
    assert torch.equal(module.head.weight, head_before)
    assert not torch.equal(module.trunk[0].weight, trunk_before)


def test_simclr_is_deterministic_for_a_seed(fmnist: Any) -> None:
    frames = fmnist.unlabeled[:64]
    a = pretrain_simclr(_fresh(), frames, META, epochs=1, batch_size=32, seed=5)
    b = pretrain_simclr(_fresh(), frames, META, epochs=1, batch_size=32, seed=5)
    c = pretrain_simclr(_fresh(), frames, META, epochs=1, batch_size=32, seed=6)
    assert a.epoch_losses == b.epoch_losses != c.epoch_losses
    for (name, pa), pb in zip(
        a.module.state_dict().items(), b.module.state_dict().values(), strict=True
    ):
        assert torch.equal(pa, pb), name


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 1}, "batch_size must be at least 2"),
        ({"epochs": -1}, "epochs must be a non-negative integer"),
        ({"temperature": 0}, "temperature must be a positive number"),
        ({"learning_rate": -1.0}, "learning_rate must be a positive number"),
        ({"projection_dim": 0}, "projection_dim must be a positive integer"),
        ({"seed": None}, "seed must be a non-negative integer"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict[str, object], message: str) -> None:
    frames = np.zeros((4, 28, 28, 1), np.uint8)
    with pytest.raises(InvalidInputError, match=message):
        pretrain_simclr(_fresh(), frames, META, **kwargs)  # type: ignore[arg-type]


def test_one_frame_or_float_frames_are_refused() -> None:
    with pytest.raises(InvalidInputError, match="at least 2 unlabeled frames, got 1"):
        pretrain_simclr(_fresh(), np.zeros((1, 28, 28, 1), np.uint8), META)
    with pytest.raises(InvalidInputError, match="uint8"):
        pretrain_simclr(_fresh(), np.zeros((4, 28, 28, 1), np.float64), META)
