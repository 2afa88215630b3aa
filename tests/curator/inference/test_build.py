"""linear_model: built graphs are valid ONNX, honour the contract, and can carry a real model."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from curator.errors import InvalidInputError
from curator.inference import ModelMetadata, OnnxModel, linear_model
from curator.inference.build import OPSET
from curator.inference.preprocess import preprocess_frames

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

MetaFactory = Callable[..., ModelMetadata]


def test_built_model_is_valid_onnx_with_the_contract_signature(
    make_meta: MetaFactory, random_weights: Callable[..., Any], rng: np.random.Generator
) -> None:
    meta = make_meta()
    w = random_weights(meta, rng)
    proto = onnx.load_from_string(
        linear_model(w.embed_weight, w.embed_bias, w.head_weight, w.head_bias, meta)
    )
    onnx.checker.check_model(proto)
    assert [o.version for o in proto.opset_import] == [OPSET]
    assert [i.name for i in proto.graph.input] == ["images"]
    assert [o.name for o in proto.graph.output] == ["embedding", "logits"]
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["N", 1, 4, 5]
    assert {p.key: p.value for p in proto.metadata_props} == meta.to_props()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"embed_weight": np.zeros((21, 3))}, r"embed_weight must have shape \(20, 3\)"),
        ({"embed_bias": np.zeros(4)}, r"embed_bias must have shape \(3,\)"),
        ({"head_weight": np.zeros((3, 5))}, r"head_weight must have shape \(3, 4\)"),
        ({"head_bias": None}, "both head_weight and head_bias"),
        ({"embed_bias": np.array([0.0, np.nan, 0.0])}, "NaN or inf"),
        ({"activation": "tanh"}, "none, relu, l2"),
    ],
)
def test_bad_weights_are_rejected(
    change: dict[str, Any],
    message: str,
    make_meta: MetaFactory,
    random_weights: Callable[..., Any],
    rng: np.random.Generator,
) -> None:
    meta = make_meta()
    w = random_weights(meta, rng)
    args: dict[str, Any] = {
        "embed_weight": w.embed_weight,
        "embed_bias": w.embed_bias,
        "head_weight": w.head_weight,
        "head_bias": w.head_bias,
        "metadata": meta,
        **change,
    }
    with pytest.raises(InvalidInputError, match=message):
        linear_model(**args)


def test_a_head_needs_class_names(
    make_meta: MetaFactory, random_weights: Callable[..., Any], rng: np.random.Generator
) -> None:
    meta = make_meta(class_names=())
    w = random_weights(make_meta(), rng)
    with pytest.raises(InvalidInputError, match="class_names"):
        linear_model(w.embed_weight, w.embed_bias, np.zeros((3, 0)), np.zeros(0), meta)


def test_l2_activation_gives_unit_embeddings(
    make_meta: MetaFactory, random_weights: Callable[..., Any], rng: np.random.Generator
) -> None:
    meta = make_meta(channels="rgb", mean=(), std=(), embedding_dim=8)
    w = random_weights(meta, rng)
    model = OnnxModel(linear_model(w.embed_weight, w.embed_bias, None, None, meta, activation="l2"))
    pred = model.predict(rng.integers(0, 256, (6, 9, 9, 3), dtype=np.uint8))
    np.testing.assert_allclose(np.linalg.norm(pred.embeddings, axis=1), 1.0, rtol=1e-5)


def _fit_softmax_head(
    x: np.ndarray, y: np.ndarray, k: int, steps: int = 100, lr: float = 1.0, l2: float = 1e-4
) -> tuple[np.ndarray, np.ndarray]:
    """Full-batch gradient descent on the mean cross-entropy: a numpy softmax regression."""
    w, b = np.zeros((x.shape[1], k)), np.zeros(k)
    onehot = np.eye(k)[y]
    for _ in range(steps):
        z = x @ w + b
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        g = (p - onehot) / len(x)
        w -= lr * (x.T @ g + l2 * w)
        b -= lr * g.sum(axis=0)
    return w, b


def test_demo_pca_embedding_and_softmax_head_on_fashion_mnist() -> None:
    """The demo: a PCA embedding and a numpy-fitted softmax head, served by onnxruntime.

    The model takes 14x14 input, so the 28x28 images go through the metadata's resize too.
    """
    from curator.data.fashion_mnist import CLASS_NAMES, find_fashion_mnist, load_fashion_mnist

    if find_fashion_mnist("train") is None or find_fashion_mnist("test") is None:
        pytest.skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
    train_x, train_y = load_fashion_mnist("train")
    test_x, test_y = load_fashion_mnist("test")
    train_x, train_y, test_x, test_y = train_x[:4000], train_y[:4000], test_x[:2000], test_y[:2000]
    pixels = train_x / 255.0
    meta = ModelMetadata(
        model_version="fmnist-pca32-demo",
        class_names=CLASS_NAMES,
        embedding_dim=32,
        input_size=(14, 14),
        channels="gray",
        mean=(float(pixels.mean()),),
        std=(float(pixels.std()),),
    )
    # the embedding: the top 32 principal components of the preprocessed training inputs
    inputs = preprocess_frames(train_x[..., None], meta).reshape(len(train_x), -1)
    centre = inputs.mean(axis=0)
    _, _, vt = np.linalg.svd(inputs - centre, full_matrices=False)
    w_e = vt[:32].T.astype(np.float32)
    b_e = (-centre @ w_e).astype(np.float32)
    embedder = OnnxModel(linear_model(w_e, b_e, None, None, meta))
    train_emb = embedder.predict(train_x[..., None], batch_size=1000).embeddings
    np.testing.assert_allclose(train_emb, (inputs - centre) @ w_e, atol=1e-3)
    scale = train_emb.std(axis=0)
    w_h, b_h = _fit_softmax_head(train_emb / scale, train_y.astype(np.int64), len(CLASS_NAMES))
    w_h = w_h / scale[:, None]  # fold the feature scaling into the head
    model = OnnxModel(linear_model(w_e, b_e, w_h, b_h, meta))

    pred = model.predict(test_x[..., None], batch_size=500)
    assert pred.logits is not None
    expected = pred.embeddings.astype(np.float64) @ w_h + b_h
    np.testing.assert_allclose(pred.logits, expected, atol=1e-3, rtol=1e-4)
    accuracy = float((pred.logits.argmax(axis=1) == test_y).mean())
    assert accuracy > 0.75, accuracy  # a linear model on 32 PCA features reaches about 0.80
    np.testing.assert_allclose(pred.probs.sum(axis=1), 1.0, rtol=1e-5)
