"""Training (extra ``train``): the networks curator trains and their export to ONNX.

- :mod:`curator.training.backbones`: ``build_embedder``, a torch module whose ``forward(x)``
  returns ``(embedding, logits)``: ``"mobilenet_v3_small"`` (224x224 edge cameras) and
  ``"tiny_cnn"`` (Fashion-MNIST at 28x28 and fast tests), randomly initialised from a seed.
- :mod:`curator.training.export`: ``export_onnx``, a module to contract-satisfying ONNX bytes
  (``images`` -> ``embedding``, ``logits``, ``curator.*`` metadata), checked against torch
  through onnxruntime.
- :mod:`curator.training.pretrain`: ``pretrain_simclr``, self-supervised SimCLR (lightly) on
  unlabeled frames.
- :mod:`curator.training.finetune`: ``finetune`` and ``evaluate`` (accuracy, per-class accuracy,
  macro F1 on a held-out set); ``epochs_for_samples``, the passes a labeled set needs to make
  up a number of training samples.
- :mod:`curator.training.pipeline`: ``train_model``, from labeled (and unlabeled) uint8 frames
  to a :class:`TrainedModel` (ONNX bytes, a state blob to fine-tune from, metrics).

Importing this package, or any module in it, loads numpy only: torch, torchvision and onnx are
imported inside the functions that need them, so ``import curator`` stays light and
``pip install 'curator[train]'`` is only needed to build or export a model.
"""

from curator.training.backbones import ARCHS, build_embedder
from curator.training.export import export_onnx
from curator.training.finetune import (
    Evaluation,
    classification_metrics,
    epochs_for_samples,
    evaluate,
    finetune,
)
from curator.training.pipeline import TrainedModel, load_state, save_state, train_model
from curator.training.pretrain import pretrain_simclr

__all__ = [
    "ARCHS",
    "Evaluation",
    "TrainedModel",
    "build_embedder",
    "classification_metrics",
    "epochs_for_samples",
    "evaluate",
    "export_onnx",
    "finetune",
    "load_state",
    "pretrain_simclr",
    "save_state",
    "train_model",
]
