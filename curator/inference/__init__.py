"""Inference: the ONNX model contract and :class:`OnnxModel`, which runs it with onnxruntime.

- :mod:`curator.inference.contract`: ``ModelMetadata`` (the ``curator.*`` metadata keys) and
  the signature checks.
- :mod:`curator.inference.preprocess`: uint8 frames to float32 NCHW, in numpy.
- :mod:`curator.inference.model`: ``OnnxModel`` and ``Prediction``.
- :mod:`curator.inference.build`: ``linear_model``, small real models from numpy weights.

Importing this package loads numpy only; onnxruntime and onnx load when a model is opened or
built. The contract is described in docs/model-contract.md.
"""

from curator.inference.build import linear_model
from curator.inference.contract import METADATA_KEYS, ModelMetadata
from curator.inference.model import OnnxModel, Prediction
from curator.inference.preprocess import preprocess_frames, resize

__all__ = [
    "METADATA_KEYS",
    "ModelMetadata",
    "OnnxModel",
    "Prediction",
    "linear_model",
    "preprocess_frames",
    "resize",
]
