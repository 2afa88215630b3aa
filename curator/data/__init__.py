"""Data sources: Fashion-MNIST and frames from video files, image folders, cameras and streams.

- :mod:`curator.data.fashion_mnist`: ``load_fashion_mnist`` (local copies first, a
  sha256-checked download on request).
- :mod:`curator.data.video`: ``read_frames``, uint8 RGB frames with index and timestamp.
- :mod:`curator.data.idx`: the IDX file format.
- :mod:`curator.data.download`: ``download_verified``, atomic and checksum-checked.

Importing this package loads numpy only; PyAV and PIL load when frames are read. See
docs/data.md.
"""

from curator.data.download import download_verified
from curator.data.fashion_mnist import CLASS_NAMES, load_fashion_mnist
from curator.data.idx import read_idx
from curator.data.video import FrameReader, VideoFrame, read_frames

__all__ = [
    "CLASS_NAMES",
    "FrameReader",
    "VideoFrame",
    "download_verified",
    "load_fashion_mnist",
    "read_frames",
    "read_idx",
]
