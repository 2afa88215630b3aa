"""OnnxModel on real models run by the real onnxruntime, against numpy re-computations."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from curator.errors import InvalidInputError, ModelContractError
from curator.inference import ModelMetadata, OnnxModel, Prediction
from curator.uncertainty import softmax

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

FLOAT, INT64, DOUBLE = 1, 7, 11
MetaFactory = Callable[..., ModelMetadata]


def _node(op: str, inputs: list[str], outputs: list[str], **attrs: Any) -> Any:
    from onnx import helper

    return helper.make_node(op, inputs, outputs, **attrs)


@pytest.mark.parametrize("activation", ["none", "relu", "l2"])
def test_outputs_equal_numpy_recomputation(
    activation: str,
    make_meta: MetaFactory,
    random_weights: Callable[..., Any],
    build: Callable[..., bytes],
    rng: np.random.Generator,
) -> None:
    meta = make_meta(channels="rgb", mean=(0.1, 0.2, 0.3), std=(0.3, 0.2, 0.1), input_size=(6, 7))
    weights = random_weights(meta, rng)
    model = OnnxModel(build(meta, weights, activation=activation))
    frames = [rng.integers(0, 256, s, dtype=np.uint8) for s in [(6, 7, 3), (20, 11, 3), (5, 5)]]
    pred = model.predict(frames)
    x = model.preprocess(frames)
    emb, logits = weights.forward(x, activation)
    assert pred.embeddings.dtype == np.float32 and pred.embeddings.shape == (3, 3)
    assert pred.logits is not None and pred.logits.dtype == np.float32
    np.testing.assert_allclose(pred.embeddings, emb, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(pred.logits, logits, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(pred.probs, softmax(logits), atol=1e-6)
    assert pred.model_version == "test-1" and len(pred) == 3


def test_properties_and_metadata_round_trip(
    tmp_path: Path,
    make_meta: MetaFactory,
    random_weights: Callable[..., Any],
    build: Callable[..., bytes],
    rng: np.random.Generator,
) -> None:
    meta = make_meta(model_version="fmnist-7", resize="nearest")
    data = build(meta, random_weights(meta, rng))
    path = tmp_path / "model.onnx"
    path.write_bytes(data)
    for source in (path, str(path), data):
        model = OnnxModel(source)
        assert model.metadata == meta
        assert model.model_version == "fmnist-7"
        assert model.class_names == ("a", "b", "c", "d")
        assert model.embedding_dim == 3
        assert model.input_size == (4, 5)
        assert model.has_logits
        assert model.sha256 == hashlib.sha256(data).hexdigest()
        assert "fmnist-7" in repr(model)


@settings(max_examples=15)
@given(n=st.integers(0, 23), batch_size=st.integers(1, 9), seed=st.integers(0, 2**16))
def test_batches_give_the_same_result_as_one_call(
    small_model: tuple[OnnxModel, Any], n: int, batch_size: int, seed: int
) -> None:
    model, weights = small_model
    frames = np.random.default_rng(seed).integers(0, 256, (n, 4, 5, 1), dtype=np.uint8)
    parts = model.predict(frames, batch_size=batch_size)
    emb, logits = weights.forward(model.preprocess(frames))
    assert parts.embeddings.shape == (n, 3)
    assert parts.logits is not None and parts.logits.shape == (n, 4)
    np.testing.assert_allclose(parts.embeddings, emb, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(parts.logits, logits, atol=1e-5, rtol=1e-5)
    whole = model.predict(frames, batch_size=max(n, 1))
    np.testing.assert_allclose(parts.embeddings, whole.embeddings, atol=1e-6)


# --- contract violations: each deliberately broken model names its problem -------------------


def _props(make_meta: MetaFactory, **overrides: Any) -> dict[str, str]:
    return make_meta(**overrides).to_props()  # type: ignore[no-any-return]


def _embedding_graph(
    graph_model: Callable[..., bytes],
    props: dict[str, str],
    *,
    input_type: int = FLOAT,
    input_shape: list[Any] | None = None,
    extra_inputs: list[tuple[str, int, list[Any]]] | None = None,
    outputs: list[tuple[str, int, list[Any]]] | None = None,
    nodes: list[Any] | None = None,
    width: int = 3,
    initializers: dict[str, np.ndarray] | None = None,
) -> bytes:
    """images -> Flatten -> MatMul -> embedding (20 -> 3), with parts swapped as told."""
    shape = input_shape or ["N", 1, 4, 5]
    p = int(np.prod([d for d in shape[1:]]))
    start = "images"
    pre: list[Any] = []
    if input_type != FLOAT:
        pre.append(_node("Cast", ["images"], ["images_f"], to=FLOAT))
        start = "images_f"
    body = nodes or [
        _node("Flatten", [start], ["flat"], axis=1),
        _node("MatMul", ["flat", "W"], ["embedding"]),
    ]
    return graph_model(
        pre + body,
        [("images", input_type, shape), *(extra_inputs or [])],
        outputs or [("embedding", FLOAT, ["N", 3])],
        props,
        {"W": np.ones((p, width), np.float32), **(initializers or {})},
    )


def test_a_minimal_embedding_only_graph_is_accepted(
    graph_model: Callable[..., bytes], make_meta: MetaFactory
) -> None:
    model = OnnxModel(_embedding_graph(graph_model, _props(make_meta)))
    assert not model.has_logits
    pred = model.predict(np.zeros((2, 4, 5), np.uint8)[..., None])
    assert pred.logits is None and pred.embeddings.shape == (2, 3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"input_type": INT64}, r"input 'images' must be tensor\(float\).*tensor\(int64\)"),
        ({"input_shape": ["N", 4, 5]}, r"input 'images' must be 4-D NCHW, got rank 3"),
        ({"input_shape": [1, 1, 4, 5]}, "fixed batch size 1"),
        (
            {"input_shape": ["N", 3, 4, 5]},
            r"3 channel\(s\) but metadata curator.channels is 'gray'",
        ),
        ({"input_shape": ["N", 1, 5, 4]}, r"curator.input_size \[4, 5\]"),
        (
            {"extra_inputs": [("mask", FLOAT, ["N", 1])]},
            r"exactly one input 'images'; extra input\(s\): mask",
        ),
        (
            {"outputs": [("embedding", FLOAT, ["N", 4])], "width": 4},
            r"output embedding has width 4 but metadata curator\.embedding_dim says 3",
        ),
        (
            {
                "outputs": [("embedding", FLOAT, ["N", 1, 3])],
                "nodes": [
                    _node("Flatten", ["images"], ["flat"], axis=1),
                    _node("MatMul", ["flat", "W"], ["e2"]),
                    _node("Unsqueeze", ["e2", "axes"], ["embedding"]),
                ],
                "initializers": {"axes": np.array([1], np.int64)},
            },
            r"output embedding must be 2-D \(N, width\), got shape \[N, 1, 3\]",
        ),
        (
            {
                "outputs": [("embedding", DOUBLE, ["N", 3])],
                "nodes": [
                    _node("Flatten", ["images"], ["flat"], axis=1),
                    _node("MatMul", ["flat", "W"], ["e32"]),
                    _node("Cast", ["e32"], ["embedding"], to=DOUBLE),
                ],
            },
            r"output embedding must be tensor\(float\)",
        ),
        (
            {
                "outputs": [("features", FLOAT, ["N", 3])],
                "nodes": [
                    _node("Flatten", ["images"], ["flat"], axis=1),
                    _node("MatMul", ["flat", "W"], ["features"]),
                ],
            },
            "model has no output 'embedding' for the embedding \\(outputs: features\\); map",
        ),
    ],
)
def test_broken_graphs_are_refused_with_the_reason(
    kwargs: dict[str, Any],
    message: str,
    graph_model: Callable[..., bytes],
    make_meta: MetaFactory,
) -> None:
    with pytest.raises(ModelContractError, match=message):
        OnnxModel(_embedding_graph(graph_model, _props(make_meta), **kwargs))


def test_wrong_input_name_is_named_and_can_be_mapped(
    make_meta: MetaFactory,
    random_weights: Callable[..., Any],
    build: Callable[..., bytes],
    rng: np.random.Generator,
) -> None:
    meta = make_meta()
    data = build(meta, random_weights(meta, rng), input_name="pixels")
    with pytest.raises(
        ModelContractError, match=r"no input 'images' \(inputs: pixels\).*input_name"
    ):
        OnnxModel(data)
    with pytest.raises(ModelContractError, match=r"no input 'image' \(inputs: pixels\)"):
        OnnxModel(data, input_name="image")
    model = OnnxModel(data, input_name="pixels")
    assert model.predict(np.zeros((1, 4, 5, 1), np.uint8)).embeddings.shape == (1, 3)


def test_user_model_with_other_output_names_needs_an_explicit_mapping(
    make_meta: MetaFactory,
    random_weights: Callable[..., Any],
    build: Callable[..., bytes],
    rng: np.random.Generator,
) -> None:
    meta = make_meta()
    weights = random_weights(meta, rng)
    data = build(meta, weights, embedding_name="feat", logits_name="fc")
    with pytest.raises(ModelContractError, match=r"no output 'embedding'.*feat.*output_names"):
        OnnxModel(data)
    model = OnnxModel(data, output_names={"embedding": "feat", "logits": "fc"})
    frames = rng.integers(0, 256, (5, 4, 5, 1), dtype=np.uint8)
    pred = model.predict(frames)
    emb, logits = weights.forward(model.preprocess(frames))
    np.testing.assert_allclose(pred.embeddings, emb, atol=1e-5, rtol=1e-5)
    assert pred.logits is not None
    np.testing.assert_allclose(pred.logits, logits, atol=1e-5, rtol=1e-5)
    # mapping only the embedding uses the model as embedding-only
    only = OnnxModel(data, output_names={"embedding": "feat"})
    assert not only.has_logits and only.predict(frames).logits is None
    # swapped roles are checked against the metadata, not trusted
    with pytest.raises(ModelContractError, match="embedding \\(graph output 'fc'\\) has width 4"):
        OnnxModel(data, output_names={"embedding": "fc", "logits": "feat"})
    with pytest.raises(ModelContractError, match="no output 'fcc' for the logits"):
        OnnxModel(data, output_names={"embedding": "feat", "logits": "fcc"})
    with pytest.raises(ModelContractError, match="'embedding' \\(required\\)"):
        OnnxModel(data, output_names={"logits": "fc"})
    with pytest.raises(ModelContractError, match="'embedding' \\(required\\)"):
        OnnxModel(data, output_names={"embedding": "feat", "probs": "fc"})


def test_embedding_only_model_has_no_logits_and_refuses_probs(
    make_meta: MetaFactory,
    random_weights: Callable[..., Any],
    build: Callable[..., bytes],
    rng: np.random.Generator,
) -> None:
    meta = make_meta(class_names=())
    weights = random_weights(meta, rng, head=False)
    model = OnnxModel(build(meta, weights))
    assert not model.has_logits and model.class_names == ()
    frames = rng.integers(0, 256, (3, 4, 5, 1), dtype=np.uint8)
    pred = model.predict(frames)
    assert pred.logits is None
    np.testing.assert_allclose(
        pred.embeddings, weights.forward(model.preprocess(frames))[0], atol=1e-5
    )
    with pytest.raises(ModelContractError, match="embedding-only"):
        _ = pred.probs


def test_metadata_problems_are_named(
    make_meta: MetaFactory,
    random_weights: Callable[..., Any],
    build: Callable[..., bytes],
    with_props: Callable[[bytes, dict[str, str]], bytes],
    rng: np.random.Generator,
) -> None:
    meta = make_meta()
    data = build(meta, random_weights(meta, rng))
    props = meta.to_props()
    with pytest.raises(ModelContractError, match=r"lack the key\(s\) curator\.embedding_dim"):
        OnnxModel(with_props(data, {k: v for k, v in props.items() if "embedding" not in k}))
    with pytest.raises(ModelContractError, match=r"curator\.class_names is not valid JSON"):
        OnnxModel(with_props(data, {**props, "curator.class_names": "a,b,c,d"}))
    with pytest.raises(ModelContractError, match="lack the key"):
        OnnxModel(with_props(data, {}))
    # class_names length disagreeing with the logits width
    with pytest.raises(
        ModelContractError,
        match=r"output logits has width 4 but metadata curator\.class_names says 3",
    ):
        OnnxModel(with_props(data, {**props, "curator.class_names": '["a", "b", "c"]'}))
    with pytest.raises(ModelContractError, match="embedding_dim says 5"):
        OnnxModel(with_props(data, {**props, "curator.embedding_dim": "5"}))
    with pytest.raises(
        ModelContractError, match=r"logits output but metadata curator\.class_names is empty"
    ):
        OnnxModel(with_props(data, {**props, "curator.class_names": "[]"}))
    with pytest.raises(ModelContractError, match="3 channel\\(s\\)"):
        OnnxModel(
            with_props(
                data,
                {
                    **props,
                    "curator.channels": "rgb",
                    "curator.mean": "[0,0,0]",
                    "curator.std": "[1,1,1]",
                },
            )
        )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty \\(0 bytes\\)"),
        (b"this is not a model at all", "is not a valid ONNX model"),
        (bytes(range(256)) * 8, "is not a valid ONNX model"),
    ],
)
def test_garbage_and_empty_files_are_refused(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(content)
    with pytest.raises(ModelContractError, match=message):
        OnnxModel(path)
    with pytest.raises(ModelContractError, match=message):
        OnnxModel(content)


def test_missing_file_is_a_contract_error(tmp_path: Path) -> None:
    with pytest.raises(ModelContractError, match="cannot read ONNX model"):
        OnnxModel(tmp_path / "absent.onnx")


def test_output_shapes_are_checked_at_the_first_run(
    graph_model: Callable[..., bytes], make_meta: MetaFactory
) -> None:
    props = _props(make_meta)
    # with dynamic H and W the embedding width (H * W) is only known when the model runs
    narrow = graph_model(
        [_node("Flatten", ["images"], ["embedding"], axis=1)],
        [("images", FLOAT, ["N", 1, "H", "W"])],
        [("embedding", FLOAT, ["N", "D"])],
        props,
    )
    nodes = [
        _node("Flatten", ["images"], ["flat"], axis=1),
        _node("MatMul", ["flat", "W"], ["embedding"]),
    ]
    model = OnnxModel(narrow)
    with pytest.raises(ModelContractError, match=r"embedding has shape \(2, 20\).*\(2, 3\)"):
        model.predict(np.zeros((2, 4, 5, 1), np.uint8))
    # one row for the whole batch instead of one per frame
    pooled = graph_model(
        [*nodes, _node("ReduceMean", ["embedding"], ["pooled"], axes=[0], keepdims=1)],
        [("images", FLOAT, ["N", 1, 4, 5])],
        [("pooled", FLOAT, ["M", 3])],
        props,
        {"W": np.ones((20, 3), np.float32)},
    )
    model = OnnxModel(pooled, output_names={"embedding": "pooled"})
    with pytest.raises(ModelContractError, match=r"embedding has shape \(1, 3\) for a batch of 4"):
        model.predict(np.zeros((4, 4, 5, 1), np.uint8))


def test_run_and_predict_reject_bad_batches(small_model: tuple[OnnxModel, Any]) -> None:
    model, _ = small_model
    with pytest.raises(InvalidInputError, match=r"float32 \(N, 1, 4, 5\).*float64"):
        model.run(np.zeros((2, 1, 4, 5)))
    with pytest.raises(InvalidInputError, match=r"\(2, 3, 4, 5\)"):
        model.run(np.zeros((2, 3, 4, 5), np.float32))
    with pytest.raises(InvalidInputError, match="uint8"):
        model.predict(np.zeros((2, 4, 5, 1), np.float32))
    with pytest.raises(InvalidInputError, match="batch_size"):
        model.predict(np.zeros((2, 4, 5, 1), np.uint8), batch_size=0)
    empty = model.run(np.zeros((0, 1, 4, 5), np.float32))
    assert isinstance(empty, Prediction)
    assert empty.embeddings.shape == (0, 3) and empty.logits is not None
    assert empty.logits.shape == (0, 4)


def test_intra_op_threads_and_providers_are_passed(
    make_meta: MetaFactory,
    random_weights: Callable[..., Any],
    build: Callable[..., bytes],
    rng: np.random.Generator,
) -> None:
    meta = make_meta()
    data = build(meta, random_weights(meta, rng))
    model = OnnxModel(data, intra_op_threads=1, providers=["CPUExecutionProvider"])
    assert model.predict(np.zeros((1, 4, 5, 1), np.uint8)).embeddings.shape == (1, 3)
    with pytest.raises(InvalidInputError, match=r"NoSuchExecutionProvider.*CPUExecutionProvider"):
        OnnxModel(data, providers=["NoSuchExecutionProvider"])


def test_hostile_metadata_values_are_contract_errors(
    make_meta: MetaFactory,
    random_weights: Callable[..., Any],
    build: Callable[..., bytes],
    with_props: Callable[[bytes, dict[str, str]], bytes],
    rng: np.random.Generator,
) -> None:
    meta = make_meta()
    data = build(meta, random_weights(meta, rng))
    props = meta.to_props()
    with pytest.raises(ModelContractError, match="embedding_dim"):
        OnnxModel(with_props(data, {**props, "curator.embedding_dim": "²"}))
    with pytest.raises(ModelContractError, match=r"curator\.mean is not valid JSON"):
        OnnxModel(with_props(data, {**props, "curator.mean": "[" * 100_000 + "]" * 100_000}))
