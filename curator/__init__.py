"""curator: active-learning data curation for fleets of edge cameras.

The shared library. Importing it loads only numpy and pydantic; onnxruntime, FAISS and torch are
imported inside the functions that need them, so the edge selector, the server and notebooks can
each install only the extra they use.

Modules, one stage of the flow each:

- :mod:`curator.uncertainty`: uncertainty scores from logits or probabilities.
- :mod:`curator.diversity`: embedding normalisation and novelty against a reference set.
- :mod:`curator.quality`: blur and exposure measures of uint8 frames.
- :mod:`curator.dedup`: exact and near-duplicate grouping.
- :mod:`curator.index`: the ``VectorIndex`` interface, a brute-force oracle and FAISS.
- :mod:`curator.selection`: pool strategies (``select``) and the streaming budget.
- :mod:`curator.wire`: the versioned edge-to-server contract.
- :mod:`curator.inference`: ``OnnxModel``, the ONNX model contract.
- :mod:`curator.data`: Fashion-MNIST and video frame sources.
- :mod:`curator.training`: the networks curator builds and ``export_onnx`` (extra ``train``).
- :mod:`curator.config`: settings from flags, environment and a TOML file, for every process.
- :mod:`curator.logs`: structured logs (JSON lines or text) for curator's processes.
"""

from curator.errors import (
    CuratorError,
    DatasetError,
    InvalidInputError,
    MissingDependencyError,
    ModelContractError,
    WireFormatError,
)

__version__ = "0.1.0"

__all__ = [
    "CuratorError",
    "DatasetError",
    "InvalidInputError",
    "MissingDependencyError",
    "ModelContractError",
    "WireFormatError",
    "__version__",
]
