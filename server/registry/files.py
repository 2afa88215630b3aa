"""The registry's model files: checked against the model contract before they are kept, and
checked against their sha256 when they are read back.

Files live in the blob store under their content-addressed key (``ab/cd/<sha256>.onnx``), so a
staged file never registered is harmless: the next stage of the same bytes finds it.
"""

from __future__ import annotations

import hashlib

import numpy as np

from curator.errors import InvalidInputError
from curator.inference import OnnxModel
from server.blobs import BlobStore
from server.errors import Unavailable
from server.registry.checks import check_version
from server.registry.rows import ModelEntry, StagedModel

__all__ = ["read_checked", "stage_model"]


def stage_model(blobs: BlobStore, onnx_bytes: bytes | bytearray | memoryview) -> StagedModel:
    """Check ``onnx_bytes`` against the model contract and put them in ``blobs``.

    The model is opened with :class:`~curator.inference.OnnxModel` and run once on a zero batch
    of one, so a model whose outputs disagree with its metadata is refused too.

    Raises:
        InvalidInputError: ``onnx_bytes`` is not bytes, or its model version is not 1-128
            printable characters without ``/`` or ``\\``.
        ModelContractError: not an ONNX model, or one that breaks the contract.
        MissingDependencyError: onnxruntime is not installed.
    """
    if not isinstance(onnx_bytes, bytes | bytearray | memoryview):
        raise InvalidInputError(f"onnx_bytes must be bytes, got {type(onnx_bytes).__name__}")
    data = bytes(onnx_bytes)
    model = OnnxModel(data, intra_op_threads=1)
    c, (h, w) = model.metadata.num_channels, model.input_size
    model.run(np.zeros((1, c, h, w), np.float32))  # checks output shapes vs. metadata
    version = check_version(model.model_version, "curator.model_version")
    key = blobs.put(data, "onnx")
    digest = hashlib.sha256(data).hexdigest()
    return StagedModel(version, digest, len(data), key, model.class_names)


def read_checked(blobs: BlobStore, entry: ModelEntry) -> bytes:
    """The ONNX bytes of ``entry``, checked against its stored sha256.

    Raises:
        NotFound: its file is missing from the blob store.
        Unavailable: the stored bytes no longer match the sha256.
    """
    data = blobs.get(entry.blob_key)
    if hashlib.sha256(data).hexdigest() != entry.info.sha256:
        raise Unavailable(f"the stored file of model {entry.info.model_version!r} is corrupt")
    return data
