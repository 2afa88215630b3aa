"""build_embedder: shapes, unit-norm embeddings, seeded weights, sizes and refusals."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from curator.errors import InvalidInputError
from curator.training.backbones import ARCHS, build_embedder

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")


def _run(module: torch.nn.Module, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    module.eval()
    with torch.no_grad():
        emb, logits = module(torch.from_numpy(x))
    return emb.numpy(), logits.numpy()


def _n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module")
def mobilenet() -> torch.nn.Module:
    return build_embedder("mobilenet_v3_small", num_classes=10)


def test_mobilenet_is_mobilenet_v3_small_class(mobilenet: torch.nn.Module) -> None:
    # torchvision's MobileNetV3-Small trunk (927,008) + Linear(576, 1024) + Linear(1024, 128)
    # + Linear(128, 10) = 1,650,346 parameters; the 1000-class torchvision model has 2.54 M.
    assert 1_000_000 < _n_params(mobilenet) < 3_000_000
    assert _n_params(mobilenet) == 927_008 + 576 * 1024 + 1024 + 1024 * 128 + 128 + 128 * 10 + 10
    assert (mobilenet.arch, mobilenet.input_size, mobilenet.channels) == (
        "mobilenet_v3_small",
        (224, 224),
        "rgb",
    )
    convs = [m for m in mobilenet.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs[0].in_channels == 3 and convs[0].stride == (2, 2)
    assert any(isinstance(m, torch.nn.Hardswish) for m in mobilenet.modules())


def test_mobilenet_gives_unit_embeddings_and_logits(mobilenet: torch.nn.Module) -> None:
    x = np.random.default_rng(1).standard_normal((3, 3, 224, 224), dtype=np.float32)
    emb, logits = _run(mobilenet, x)
    assert emb.shape == (3, 128) and logits.shape == (3, 10)
    assert emb.dtype == np.float32 and logits.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    # the head reads the normalised embedding: logits = emb @ W.T + b
    w, b = mobilenet.head.weight.detach().numpy(), mobilenet.head.bias.detach().numpy()
    np.testing.assert_allclose(logits, emb @ w.T + b, atol=1e-5)
    # an untrained net in eval mode still tells inputs apart (BatchNorm statistics calibrated)
    cosine = emb @ emb.T
    assert cosine[~np.eye(3, dtype=bool)].max() < 0.99


def test_gray_mobilenet_takes_one_channel() -> None:
    module = build_embedder(num_classes=2, embedding_dim=8, input_size=64, channels="gray")
    emb, logits = _run(module, np.zeros((2, 1, 64, 64), np.float32))
    assert emb.shape == (2, 8) and logits.shape == (2, 2)
    with pytest.raises(RuntimeError):
        _run(module, np.zeros((2, 3, 64, 64), np.float32))


@settings(max_examples=10)
@given(
    batch=st.integers(1, 4),
    dim=st.integers(1, 32),
    classes=st.integers(1, 12),
    gray=st.booleans(),
    size=st.integers(8, 40),
)
def test_tiny_cnn_embeddings_have_unit_norm(
    batch: int, dim: int, classes: int, gray: bool, size: int
) -> None:
    channels = "gray" if gray else "rgb"
    module = build_embedder(
        "tiny_cnn", embedding_dim=dim, num_classes=classes, input_size=size, channels=channels
    )
    x = np.random.default_rng(batch).standard_normal(
        (batch, 1 if gray else 3, size, size), dtype=np.float32
    )
    emb, logits = _run(module, x)
    assert emb.shape == (batch, dim) and logits.shape == (batch, classes)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


def test_tiny_cnn_is_small() -> None:
    module = build_embedder("tiny_cnn", num_classes=10, input_size=28, channels="gray")
    assert 50_000 < _n_params(module) < 200_000


def test_the_same_seed_gives_the_same_weights_and_leaves_torch_rng_alone() -> None:
    before = torch.get_rng_state()
    a = build_embedder("tiny_cnn", num_classes=3, input_size=28, seed=7)
    b = build_embedder("tiny_cnn", num_classes=3, input_size=28, seed=7)
    c = build_embedder("tiny_cnn", num_classes=3, input_size=28, seed=8)
    assert torch.equal(torch.get_rng_state(), before)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name
    weights = [
        (pa, pc) for pa, pc in zip(a.parameters(), c.parameters(), strict=True) if pa.ndim >= 2
    ]
    assert len(weights) == 5  # 3 convolutions, projection, head
    assert all(not torch.equal(pa, pc) for pa, pc in weights)


def test_seed_none_draws_from_the_global_generator() -> None:
    torch.manual_seed(3)
    a = build_embedder("tiny_cnn", num_classes=3, input_size=28, seed=None)
    torch.manual_seed(3)
    b = build_embedder("tiny_cnn", num_classes=3, input_size=28, seed=None)
    c = build_embedder("tiny_cnn", num_classes=3, input_size=28, seed=None)
    assert torch.equal(a.head.weight, b.head.weight)
    assert not torch.equal(b.head.weight, c.head.weight)


def test_unknown_arch_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="unknown arch 'resnet50'") as err:
        build_embedder("resnet50", num_classes=3)
    for name in ARCHS:
        assert name in str(err.value)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_classes": 0}, "num_classes must be a positive integer, got 0"),
        ({"num_classes": True}, "num_classes must be a positive integer"),
        ({"num_classes": 3, "embedding_dim": -1}, "embedding_dim must be a positive integer"),
        ({"num_classes": 3, "channels": "cmyk"}, "channels must be one of rgb, gray, got 'cmyk'"),
        ({"num_classes": 3, "input_size": 16}, "too small for mobilenet_v3_small: at least 32"),
        ({"num_classes": 3, "input_size": (224,)}, r"input_size must be an integer or \(H, W\)"),
        ({"num_classes": 3, "input_size": 0}, "input_size must be a positive integer, got 0"),
        ({"num_classes": 3, "seed": -1}, "seed must be a non-negative integer or None"),
        ({"num_classes": 3, "seed": 1.5}, "seed must be a non-negative integer or None"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        build_embedder(**kwargs)  # type: ignore[arg-type]


def test_importing_curator_training_does_not_import_torch() -> None:
    code = (
        "import sys, curator.training, curator.training.backbones, curator.training.export\n"
        "print(sorted({'torch', 'torchvision', 'onnx', 'onnxruntime'} & set(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "[]"
