"""train_model: a tiny real run on Fashion-MNIST, the exported ONNX checked against torch."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pytest

from curator.errors import InvalidInputError
from curator.inference import OnnxModel, preprocess_frames
from curator.training.finetune import classification_metrics
from curator.training.pipeline import TrainedModel, load_state, train_model

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("lightly")

pytestmark = pytest.mark.usefixtures("one_thread")


def _train(fmnist: Any, **kwargs: Any) -> TrainedModel:
    options: dict[str, Any] = {
        "model_version": "fm-1",
        "epochs": 3,
        "held_out": (fmnist.held_out_frames, fmnist.held_out_labels),
        "seed": 0,
    }
    options.update(kwargs)
    labels = options.pop("labels", fmnist.labels)
    return train_model(fmnist.frames, labels, fmnist.class_names, **options)


@pytest.fixture(scope="module")
def trained(fmnist: Any) -> TrainedModel:
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # module-scoped: the function-scoped one_thread is not active yet
    try:
        return _train(fmnist)
    finally:
        torch.set_num_threads(before)


def test_trained_model_meets_the_contract_and_learns(trained: TrainedModel, fmnist: Any) -> None:
    meta = trained.metadata
    assert meta.model_version == "fm-1" and meta.class_names == fmnist.class_names
    assert (meta.input_size, meta.channels, meta.embedding_dim) == ((28, 28), "gray", 64)
    assert 0.2 < meta.mean[0] < 0.45 and 0.2 < meta.std[0] < 0.5  # measured on the frames
    print("held-out metrics", trained.metrics.as_dict(), "losses", trained.train_losses)
    assert trained.metrics.n == 200 and trained.n_train == 400
    assert trained.metrics.accuracy >= 0.6  # four classes: chance is 0.25
    assert trained.train_losses[-1] < trained.train_losses[0]
    assert trained.parent_sha256 is None and trained.pretrain_losses == ()
    assert trained.sha256 == hashlib.sha256(trained.onnx).hexdigest()


def test_onnx_matches_torch_within_1e_4(trained: TrainedModel, fmnist: Any) -> None:
    """Must-show 1: the exported ONNX computes what the torch model computes, and loads in
    curator.inference.OnnxModel, fed the edge's own preprocessing of uint8 frames."""
    model = OnnxModel(trained.onnx)
    assert model.metadata == trained.metadata
    module, meta = load_state(trained.state_dict)
    assert meta == trained.metadata
    frames = fmnist.held_out_frames[:50]
    pred = model.predict(frames)
    with torch.no_grad():
        emb, logits = module(torch.from_numpy(preprocess_frames(frames, meta)))
    assert pred.logits is not None
    np.testing.assert_allclose(pred.embeddings, emb.numpy(), atol=1e-4)
    np.testing.assert_allclose(pred.logits, logits.numpy(), atol=1e-4)
    # the ONNX model scores what the pipeline recorded on the whole held-out set
    onnx_metrics = classification_metrics(
        fmnist.held_out_labels, model.predict(fmnist.held_out_frames).logits, meta.class_names
    )
    assert onnx_metrics.accuracy == pytest.approx(trained.metrics.accuracy, abs=1 / 200)


def test_training_is_deterministic_for_a_seed(trained: TrainedModel, fmnist: Any) -> None:
    again = _train(fmnist)
    assert again.train_losses == trained.train_losses
    assert again.metrics == trained.metrics
    a, _ = load_state(trained.state_dict)
    b, _ = load_state(again.state_dict)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name


def test_a_candidate_trained_on_shuffled_labels_scores_near_chance(
    trained: TrainedModel, fmnist: Any
) -> None:
    shuffled = np.random.default_rng(1).permutation(fmnist.labels)
    broken = _train(fmnist, labels=shuffled, model_version="fm-broken")
    print("held-out accuracy: good", trained.metrics.accuracy, "shuffled", broken.metrics.accuracy)
    assert broken.metrics.accuracy <= 0.45  # chance is 0.25
    assert broken.metrics.accuracy < trained.metrics.accuracy - 0.3
    OnnxModel(broken.onnx)  # still a valid model: the gate, not the exporter, must stop it


def test_a_child_starts_from_its_parent(trained: TrainedModel, fmnist: Any) -> None:
    fresh = _train(fmnist, epochs=1, seed=1, model_version="fm-fresh")
    child = _train(fmnist, epochs=1, seed=1, parent=trained.state_dict, model_version="fm-2")
    print("first-epoch loss: parent", child.train_losses, "fresh", fresh.train_losses)
    assert child.train_losses[0] < fresh.train_losses[0] - 0.1
    assert child.parent_sha256 == hashlib.sha256(trained.state_dict).hexdigest()
    assert child.metadata.model_version == "fm-2"
    assert (child.metadata.mean, child.metadata.std) == (
        trained.metadata.mean,
        trained.metadata.std,
    )
    assert OnnxModel(child.onnx).model_version == "fm-2"


def test_pretraining_and_the_held_out_fraction(fmnist: Any) -> None:
    model = train_model(
        fmnist.frames[:200],
        fmnist.labels[:200],
        fmnist.class_names,
        model_version="fm-ssl",
        unlabeled_frames=fmnist.unlabeled[:128, ..., 0],  # (N, H, W) gray is accepted too
        pretrain_epochs=2,
        epochs=1,
        held_out_fraction=0.25,
        embedding_dim=16,
    )
    assert len(model.pretrain_losses) == 2 and model.n_unlabeled == 128
    # a stratified split: a quarter of each class held out
    counts = np.bincount(fmnist.labels[:200], minlength=4)
    assert model.metrics.n == sum(round(0.25 * c) for c in counts)
    assert model.n_train == 200 - model.metrics.n
    assert OnnxModel(model.onnx).metadata.embedding_dim == 16


def test_bad_inputs_are_refused(trained: TrainedModel, fmnist: Any) -> None:
    frames, labels, names = fmnist.frames[:20], fmnist.labels[:20], fmnist.class_names
    with pytest.raises(InvalidInputError, match="uint8"):
        train_model(frames.astype(np.float32), labels, names, model_version="x")
    with pytest.raises(InvalidInputError, match=r"class indices in \[0, 3\)"):
        train_model(frames, labels, names[:3], model_version="x")
    with pytest.raises(InvalidInputError, match="held_out_fraction must be in"):
        train_model(frames, labels, names, model_version="x", held_out_fraction=1.0)
    with pytest.raises(InvalidInputError, match="needs unlabeled_frames"):
        train_model(frames, labels, names, model_version="x", pretrain_epochs=1)
    with pytest.raises(InvalidInputError, match="differ from the parent's"):
        train_model(
            frames, labels, ("a", "b", "c", "d"), model_version="x", parent=trained.state_dict
        )
    with pytest.raises(InvalidInputError, match="not a curator state blob"):
        load_state(b"not torch")
