"""Training (extra ``train``): the networks curator trains and their export to ONNX.

- :mod:`curator.training.backbones`: ``build_embedder``, a torch module whose ``forward(x)``
  returns ``(embedding, logits)``: ``"mobilenet_v3_small"`` (224x224 edge cameras) and
  ``"tiny_cnn"`` (Fashion-MNIST at 28x28 and fast tests), randomly initialised from a seed.
- :mod:`curator.training.export`: ``export_onnx``, a module to contract-satisfying ONNX bytes
  (``images`` -> ``embedding``, ``logits``, ``curator.*`` metadata), checked against torch
  through onnxruntime.

Importing this package, or any module in it, loads numpy only: torch, torchvision and onnx are
imported inside the functions that need them, so ``import curator`` stays light and
``pip install 'curator[train]'`` is only needed to build or export a model.
"""

from curator.training.backbones import ARCHS, build_embedder
from curator.training.export import export_onnx

__all__ = ["ARCHS", "build_embedder", "export_onnx"]
