"""finetune / evaluate / classification_metrics: real training on Fashion-MNIST, oracles."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from curator.errors import InvalidInputError
from curator.inference import ModelMetadata
from curator.training.backbones import build_embedder
from curator.training.finetune import (
    classification_metrics,
    epochs_for_samples,
    evaluate,
    finetune,
)

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.usefixtures("one_thread")


def _meta(names: tuple[str, ...]) -> ModelMetadata:
    return ModelMetadata("ft-test", names, 32, (28, 28), "gray", (0.286,), (0.353,))


def _fresh(k: int, seed: int = 0) -> torch.nn.Module:
    return build_embedder(
        "tiny_cnn", embedding_dim=32, num_classes=k, input_size=28, channels="gray", seed=seed
    )


def test_metrics_match_a_hand_computed_example() -> None:
    # labels 0 0 0 1 1 2, predictions 0 0 1 1 2 2; class 3 absent from both
    m = classification_metrics([0, 0, 0, 1, 1, 2], [0, 0, 1, 1, 2, 2], ["a", "b", "c", "d"])
    assert m.accuracy == pytest.approx(4 / 6)
    assert m.per_class_accuracy == {"a": pytest.approx(2 / 3), "b": 0.5, "c": 1.0, "d": None}
    # F1: a = 2*2/(3+2) = 0.8, b = 2*1/(2+2) = 0.5, c = 2*1/(1+2) = 2/3; d is left out
    assert m.macro_f1 == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert m.n == 6 and m.loss is None
    assert m.as_dict()["per_class_accuracy"]["d"] is None


def test_logits_give_the_cross_entropy_and_arg_max() -> None:
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [3.0, -1.0]])
    m = classification_metrics([0, 1, 1], logits, ["x", "y"])
    expected = -np.mean(
        [
            np.log(np.exp(2) / (np.exp(2) + 1)),
            np.log(np.e / (1 + np.e)),
            np.log(np.exp(-1) / (np.exp(3) + np.exp(-1))),
        ]
    )
    assert m.loss == pytest.approx(expected)
    assert m.accuracy == pytest.approx(2 / 3)


@settings(max_examples=30)
@given(
    hnp.arrays(np.int64, st.integers(1, 40), elements=st.integers(0, 3)),
    st.randoms(use_true_random=False),
)
def test_metric_invariants(labels: np.ndarray, rnd: object) -> None:
    names = ["a", "b", "c", "d"]
    perfect = classification_metrics(labels, labels, names)
    assert perfect.accuracy == 1.0 and perfect.macro_f1 == 1.0
    assert all(v in (None, 1.0) for v in perfect.per_class_accuracy.values())
    wrong = classification_metrics(labels, (labels + 1) % 4, names)
    assert wrong.accuracy == 0.0 and wrong.macro_f1 == 0.0
    # accuracy is the support-weighted mean of the per-class accuracies
    pred = np.random.default_rng(len(labels)).integers(0, 4, len(labels))
    m = classification_metrics(labels, pred, names)
    support = np.bincount(labels, minlength=4)
    weighted = sum(
        support[i] * (m.per_class_accuracy[n] or 0.0) for i, n in enumerate(names)
    ) / len(labels)
    assert m.accuracy == pytest.approx(weighted)
    assert m.accuracy == pytest.approx(float(np.mean(pred == labels)))
    assert 0.0 <= m.macro_f1 <= 1.0


@pytest.mark.parametrize(
    ("labels", "pred", "message"),
    [
        ([0, 1], [0], r"labels must have shape \(1,\)"),
        ([0, 4], [0, 1], r"class indices in \[0, 4\), got values in \[0, 4\]"),
        ([0.5, 1], [0, 1], "integer class indices"),
        ([], [], "at least one prediction"),
        ([0], np.zeros((1, 3)), r"logits must have shape \(1, 4\)"),
        ([0], np.full((1, 4), np.nan), "NaN or inf"),
    ],
)
def test_bad_metric_inputs_are_refused(labels: object, pred: object, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        classification_metrics(labels, pred, ["a", "b", "c", "d"])


def test_finetune_learns_fashion_mnist(fmnist: Any) -> None:
    meta = _meta(fmnist.class_names)
    result = finetune(
        _fresh(4),
        fmnist.frames,
        fmnist.labels,
        meta,
        epochs=4,
        held_out=(fmnist.held_out_frames, fmnist.held_out_labels),
    )
    losses = result.epoch_losses
    assert len(losses) == 4 and losses[-1] < losses[0]
    assert result.metrics is not None
    print("finetune held-out", result.metrics.as_dict(), "losses", losses)
    assert result.metrics.n == 200
    assert result.metrics.accuracy >= 0.6  # chance is 0.25
    assert result.metrics.macro_f1 >= 0.5
    assert not result.module.training
    # evaluate() gives the same numbers
    again = evaluate(result.module, fmnist.held_out_frames, fmnist.held_out_labels, meta)
    assert again == result.metrics


def test_finetune_is_deterministic_for_a_seed(fmnist: Any) -> None:
    meta = _meta(fmnist.class_names)
    frames, labels = fmnist.frames[:128], fmnist.labels[:128]
    a = finetune(_fresh(4), frames, labels, meta, epochs=2, seed=3)
    b = finetune(_fresh(4), frames, labels, meta, epochs=2, seed=3)
    c = finetune(_fresh(4), frames, labels, meta, epochs=2, seed=4)
    assert a.epoch_losses == b.epoch_losses
    for (name, pa), pb in zip(
        a.module.state_dict().items(), b.module.state_dict().values(), strict=True
    ):
        assert torch.equal(pa, pb), name
    assert a.epoch_losses != c.epoch_losses  # another shuffling order


def test_starting_from_parent_weights_starts_better(fmnist: Any) -> None:
    meta = _meta(fmnist.class_names)
    parent = finetune(_fresh(4), fmnist.frames[:200], fmnist.labels[:200], meta, epochs=3).module
    child = _fresh(4, seed=1)
    child.load_state_dict(parent.state_dict())
    new_frames, new_labels = fmnist.frames[200:], fmnist.labels[200:]
    from_parent = finetune(child, new_frames, new_labels, meta, epochs=1)
    from_scratch = finetune(_fresh(4, seed=1), new_frames, new_labels, meta, epochs=1)
    print(
        "first-epoch loss: parent", from_parent.epoch_losses, "scratch", from_scratch.epoch_losses
    )
    assert from_parent.epoch_losses[0] < from_scratch.epoch_losses[0] - 0.1


def test_zero_epochs_only_evaluates(fmnist: Any) -> None:
    meta = _meta(fmnist.class_names)
    module = _fresh(4)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    result = finetune(
        module,
        fmnist.frames[:8],
        fmnist.labels[:8],
        meta,
        epochs=0,
        held_out=(fmnist.frames[:8], fmnist.labels[:8]),
    )
    assert result.epoch_losses == ()
    assert result.metrics is not None and result.metrics.n == 8
    for k, v in module.state_dict().items():
        assert torch.equal(v, before[k]), k


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"epochs": -1}, "epochs must be a non-negative integer"),
        ({"batch_size": 0}, "batch_size must be a positive integer"),
        ({"learning_rate": 0.0}, "learning_rate must be a positive number"),
        ({"seed": -2}, "seed must be a non-negative integer"),
    ],
)
def test_bad_hyper_parameters_are_refused(kwargs: dict[str, object], message: str) -> None:
    frames = np.zeros((4, 28, 28, 1), np.uint8)
    with pytest.raises(InvalidInputError, match=message):
        finetune(_fresh(2), frames, [0, 1, 0, 1], _meta(("a", "b")), **kwargs)  # type: ignore[arg-type]


def test_bad_frames_and_labels_are_refused() -> None:
    meta = _meta(("a", "b"))
    with pytest.raises(InvalidInputError, match="uint8"):
        finetune(_fresh(2), np.zeros((4, 28, 28, 1), np.float32), [0, 1, 0, 1], meta)
    with pytest.raises(InvalidInputError, match=r"class indices in \[0, 2\)"):
        finetune(_fresh(2), np.zeros((4, 28, 28, 1), np.uint8), [0, 1, 2, 1], meta)
    with pytest.raises(InvalidInputError, match="at least one labeled frame"):
        finetune(_fresh(2), np.zeros((0, 28, 28, 1), np.uint8), [], meta)


@pytest.mark.parametrize(
    ("n", "samples", "min_epochs", "epochs"),
    [(400, 20_000, 5, 50), (10_000, 20_000, 5, 5), (3, 10, 1, 4), (7, 0, 2, 2), (7, 0, 0, 0)],
)
def test_epochs_make_up_the_samples_and_the_minimum(
    n: int, samples: int, min_epochs: int, epochs: int
) -> None:
    got = epochs_for_samples(n, samples=samples, min_epochs=min_epochs)
    assert got == epochs
    assert got * n >= samples and got >= min_epochs
    if got > min_epochs:  # one pass fewer would fall short of the samples
        assert (got - 1) * n < samples


@pytest.mark.parametrize(
    ("n", "samples", "min_epochs", "message"),
    [(0, 10, 1, "n must"), (5, -1, 1, "samples must"), (5, 10, -1, "min_epochs must"),
     (5, 10.5, 1, "samples must"), (True, 10, 1, "n must")],
)  # fmt: skip
def test_bad_epoch_counts_are_refused(n: Any, samples: Any, min_epochs: Any, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        epochs_for_samples(n, samples=samples, min_epochs=min_epochs)
