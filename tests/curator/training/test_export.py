"""export_onnx: the exported model satisfies the contract and computes what torch computes."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from curator.errors import InvalidInputError, ModelContractError
from curator.inference import ModelMetadata, OnnxModel
from curator.training.backbones import build_embedder
from curator.training.export import export_onnx

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

CLASSES = tuple(f"c{i}" for i in range(10))


def _torch_outputs(module: torch.nn.Module, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    was_training = module.training
    module.eval()
    with torch.no_grad():
        emb, logits = module(torch.from_numpy(x))
    module.train(was_training)
    return emb.numpy(), logits.numpy()


@pytest.fixture(scope="module")
def mobilenet_meta() -> ModelMetadata:
    return ModelMetadata(
        model_version="mnv3s-untrained-0",
        class_names=CLASSES,
        embedding_dim=128,
        input_size=(224, 224),
        channels="rgb",
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
    )


@pytest.fixture(scope="module")
def exported(
    tmp_path_factory: pytest.TempPathFactory, mobilenet_meta: ModelMetadata
) -> tuple[torch.nn.Module, bytes, Path]:
    """One MobileNetV3-small exported once for the whole module (it takes about a second)."""
    module = build_embedder("mobilenet_v3_small", num_classes=len(CLASSES), seed=0)
    path = tmp_path_factory.mktemp("export") / "model.onnx"
    data = export_onnx(module, mobilenet_meta, path)
    return module, data, path


@pytest.mark.parametrize("batch", [1, 5])
def test_mobilenet_round_trips_through_onnxruntime(
    exported: tuple[torch.nn.Module, bytes, Path], batch: int
) -> None:
    module, _, path = exported
    model = OnnxModel(path)
    x = np.random.default_rng(batch).standard_normal((batch, 3, 224, 224), dtype=np.float32)
    pred = model.run(x)
    emb, logits = _torch_outputs(module, x)
    assert pred.embeddings.shape == (batch, 128) and pred.logits is not None
    np.testing.assert_allclose(pred.embeddings, emb, atol=1e-4)
    np.testing.assert_allclose(pred.logits, logits, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(pred.embeddings, axis=1), 1.0, atol=1e-5)


def test_uint8_frames_go_through_the_contract_preprocessing(
    exported: tuple[torch.nn.Module, bytes, Path],
) -> None:
    module, data, _ = exported
    model = OnnxModel(data)
    frames = np.random.default_rng(0).integers(0, 256, (2, 240, 320, 3), dtype=np.uint8)
    pred = model.predict(frames)
    emb, _ = _torch_outputs(module, model.preprocess(frames))
    np.testing.assert_allclose(pred.embeddings, emb, atol=1e-4)


def test_metadata_file_and_graph_are_what_was_asked(
    exported: tuple[torch.nn.Module, bytes, Path], mobilenet_meta: ModelMetadata
) -> None:
    module, data, path = exported
    assert path.read_bytes() == data
    assert [p.name for p in path.parent.iterdir()] == ["model.onnx"]  # no temp file left
    model = OnnxModel(path)
    assert model.metadata == mobilenet_meta
    assert model.sha256 == hashlib.sha256(data).hexdigest()
    proto = onnx.load_from_string(data)
    assert {p.key: p.value for p in proto.metadata_props} == mobilenet_meta.to_props()
    assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [17]
    assert [i.name for i in proto.graph.input] == ["images"]
    assert [o.name for o in proto.graph.output] == ["embedding", "logits"]
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["N", 3, 224, 224]
    assert module.training  # export restored the training mode it found


def test_export_without_path_writes_nothing_and_is_deterministic(tmp_path: Path) -> None:
    meta = ModelMetadata("tiny-1", ("a", "b", "c"), 16, (28, 28), channels="gray")
    module = build_embedder(
        "tiny_cnn", embedding_dim=16, num_classes=3, input_size=28, channels="gray"
    )
    module.eval()
    first = export_onnx(module, meta)
    again = export_onnx(
        build_embedder("tiny_cnn", embedding_dim=16, num_classes=3, input_size=28, channels="gray"),
        meta,
    )
    assert first == again  # same seed, same bytes
    assert not module.training


def test_an_existing_file_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"old model")
    meta = ModelMetadata("tiny-2", ("a", "b"), 8, (28, 28), channels="rgb")
    data = export_onnx(
        build_embedder("tiny_cnn", embedding_dim=8, num_classes=2, input_size=28),
        meta,
        path,
        opset=18,
        check=False,
    )
    assert path.read_bytes() == data
    assert OnnxModel(path).model_version == "tiny-2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"embedding_dim": 64}, r"embedding has shape \(2, 16\) .* metadata embedding_dim is 64"),
        ({"class_names": ("a", "b")}, r"logits have shape \(2, 3\) .* has 2 name\(s\)"),
        (
            {"channels": "rgb", "mean": (), "std": ()},
            "built for channels 'gray' but metadata says 'rgb'",
        ),
        ({"input_size": (32, 32)}, r"built for input_size \[28, 28\] but metadata says \[32, 32\]"),
    ],
)
def test_metadata_disagreeing_with_the_module_is_refused(
    tmp_path: Path, change: dict[str, object], message: str
) -> None:
    meta = replace(
        ModelMetadata("tiny-3", ("a", "b", "c"), 16, (28, 28), channels="gray"), **change
    )
    module = build_embedder(
        "tiny_cnn", embedding_dim=16, num_classes=3, input_size=28, channels="gray"
    )
    path = tmp_path / "model.onnx"
    with pytest.raises(ModelContractError, match=message):
        export_onnx(module, meta, path)
    assert not path.exists()


class _Drifting(torch.nn.Module):
    """A module whose output depends on how often it was called: tracing freezes one value,
    so onnxruntime and torch disagree and the check must notice."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.calls += 1
        flat = x.flatten(1)[:, :4] * float(self.calls)
        return flat, flat[:, :2]


def test_the_check_catches_outputs_that_differ_from_torch(tmp_path: Path) -> None:
    meta = ModelMetadata("drift", ("a", "b"), 4, (2, 2), channels="gray")
    path = tmp_path / "model.onnx"
    with pytest.raises(ModelContractError, match="onnxruntime's embedding differs from torch's"):
        export_onnx(_Drifting(), meta, path)
    assert not path.exists()
    export_onnx(_Drifting(), meta, path, check=False)  # unchecked, it is written
    assert path.exists()


class _EmbeddingOnly(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(x.flatten(1), dim=1)


def test_an_embedding_only_module_exports_without_logits() -> None:
    meta = ModelMetadata("emb-only", (), 4, (2, 2), channels="gray")
    model = OnnxModel(export_onnx(_EmbeddingOnly(), meta))
    assert not model.has_logits
    x = np.arange(12, dtype=np.float32).reshape(3, 1, 2, 2)
    expected = x.reshape(3, 4) / np.linalg.norm(x.reshape(3, 4), axis=1, keepdims=True)
    np.testing.assert_allclose(model.run(x).embeddings, expected, atol=1e-6)


class _ThreeOutputs(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        flat = x.flatten(1)
        return flat, flat, flat


def test_bad_arguments_and_modules_are_refused() -> None:
    meta = ModelMetadata("bad", ("a",), 4, (2, 2), channels="gray")
    with pytest.raises(InvalidInputError, match="metadata must be a ModelMetadata, got dict"):
        export_onnx(_EmbeddingOnly(), meta.to_props())  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match=r"opset must be in \[13, 20\], got 9"):
        export_onnx(_EmbeddingOnly(), meta, opset=9)
    with pytest.raises(ModelContractError, match=r"must return .* \(embedding, logits\)"):
        export_onnx(_ThreeOutputs(), meta)
    module = build_embedder("tiny_cnn", embedding_dim=4, num_classes=1, input_size=8)
    del module.channels  # a module that does not say its channels: the run itself fails
    with pytest.raises(ModelContractError, match=r"cannot run on a \(2, 1, 8, 8\) batch"):
        export_onnx(module, replace(meta, input_size=(8, 8)))
