"""Frame sources: a video file, an image folder, a camera or a network stream, as RGB frames.

:func:`read_frames` opens the source at once (an unreadable one raises :class:`DatasetError`
with a one-line message) and returns a :class:`FrameReader`, an iterator of
:class:`VideoFrame` s, each a uint8 ``(H, W, 3)`` RGB array with its index in the source and a
timestamp in seconds.

Sources:

- a **video file** path: decoded with PyAV (FFmpeg), first video stream;
- an **image folder**: its image files (``.jpg``, ``.jpeg``, ``.png``, ``.bmp``, ``.gif``,
  ``.webp``, ``.tif``, ``.tiff``) in sorted name order, decoded with PIL; the timestamp of the
  ``i``-th file is ``i`` seconds (a folder has no clock);
- a **camera** index ``n``: ``/dev/video{n}`` through FFmpeg's ``v4l2`` input (Linux);
- an **RTSP/HTTP URL** (``rtsp://``, ``http://`` ...): passed to FFmpeg as is; FFmpeg
  ``options`` such as ``{"rtsp_transport": "tcp"}`` and a ``timeout`` go to ``av.open``.

Cameras and URLs are not exercised by the tests here.

Damaged data inside a source is skipped and counted, not raised: a packet the decoder rejects,
the rest of a truncated file, an image file PIL cannot read. :attr:`FrameReader.skipped` says how
many. With ``loop=True`` a file or folder starts over at its end; indices and timestamps keep
increasing across passes (the next pass starts one frame interval after the last frame).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import numpy.typing as npt

from curator._optional import require
from curator.errors import DatasetError, InvalidInputError

__all__ = ["IMAGE_SUFFIXES", "FrameReader", "VideoFrame", "read_frames"]

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})

Source = str | os.PathLike[str] | int
_Decoded = tuple[int, float, Callable[[], "npt.NDArray[np.uint8] | None"]]


@dataclass(frozen=True)
class VideoFrame:
    """One decoded frame.

    Attributes:
        index: position in the source (counting every decoded frame, across loop passes).
        timestamp: seconds from the start of the source.
        image: ``(H, W, 3)`` uint8 RGB.
    """

    index: int
    timestamp: float
    image: npt.NDArray[np.uint8]


def _check_count(value: Any, name: str, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidInputError(f"{name} must be an integer >= {minimum}, got {value!r}")


class FrameReader(Iterator[VideoFrame]):
    """An iterator of frames from one source; see the module docstring and :func:`read_frames`.

    Use it as a context manager, or exhaust it, so the decoder is closed.
    """

    def __init__(
        self,
        source: Source,
        *,
        every: int = 1,
        max_frames: int | None = None,
        loop: bool = False,
        options: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> None:
        _check_count(every, "every", 1)
        if max_frames is not None:
            _check_count(max_frames, "max_frames", 0)
        if isinstance(source, bool) or not isinstance(source, (str, os.PathLike, int)):
            raise InvalidInputError(
                f"source must be a path, URL or camera index, got {type(source).__name__}"
            )
        self.source = f"camera {source}" if isinstance(source, int) else str(source)
        self.skipped = 0
        self._every, self._max, self._loop = every, max_frames, loop
        self._options, self._timeout = dict(options or {}), timeout
        self._av = require("av", extra="edge")
        self._folder: list[Path] | None = None
        self._container: Any = None
        if not isinstance(source, int) and Path(source).is_dir():
            self._folder = sorted(
                p for p in Path(source).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES
            )
            if not self._folder:
                raise DatasetError(f"image folder {self.source!r} holds no image files")
        else:
            self._target = source
            self._container = self._open()
        self._frames = self._generate()

    def _open(self) -> Any:
        av, source = self._av, self._target
        kwargs: dict[str, Any] = {"options": self._options, "timeout": self._timeout}
        if isinstance(source, int):
            source, kwargs["format"] = f"/dev/video{source}", "v4l2"
        try:
            container = av.open(str(source), **kwargs)
        except (av.FFmpegError, OSError) as exc:
            raise DatasetError(f"cannot open video source {self.source!r}: {exc}") from exc
        if not container.streams.video:
            container.close()
            raise DatasetError(f"video source {self.source!r} has no video stream")
        return container

    def _decode_video(self, container: Any) -> Iterator[_Decoded]:
        av = self._av
        stream = container.streams.video[0]
        rate = float(stream.average_rate) if stream.average_rate else 0.0
        count = 0
        packets = container.demux(stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                return
            except av.FFmpegError:  # the container itself is damaged: stop here
                self.skipped += 1
                return
            try:
                frames = packet.decode()
            except av.FFmpegError:
                self.skipped += 1
                continue
            for frame in frames:
                t = frame.time if frame.time is not None else (count / rate if rate else count)
                yield count, float(t), partial(frame.to_ndarray, format="rgb24")
                count += 1

    def _decode_folder(self, files: list[Path]) -> Iterator[_Decoded]:
        image_module = require("PIL.Image", extra="edge")

        def load(path: Path) -> npt.NDArray[np.uint8] | None:
            try:
                with image_module.open(path) as img:
                    return np.asarray(img.convert("RGB"), dtype=np.uint8)
            except (OSError, ValueError, SyntaxError):
                return None

        for i, path in enumerate(files):
            yield i, float(i), partial(load, path)

    def _passes(self) -> Iterator[tuple[Iterator[_Decoded], float]]:
        while True:
            if self._folder is not None:
                yield self._decode_folder(self._folder), 1.0
            else:
                if self._container is None:
                    self._container = self._open()
                stream = self._container.streams.video[0]
                rate = float(stream.average_rate) if stream.average_rate else 0.0
                try:
                    yield self._decode_video(self._container), (1.0 / rate if rate else 0.0)
                finally:
                    self._container.close()
                    self._container = None
            if not self._loop:
                return

    def _generate(self) -> Generator[VideoFrame, None, None]:
        emitted, index_offset, time_offset = 0, 0, 0.0
        if self._max == 0:
            return
        for decoded, step in self._passes():
            seen, last_t = 0, 0.0
            for local, t, load in decoded:
                seen, last_t = local + 1, t
                index = index_offset + local
                if index % self._every:
                    continue
                image = load()
                if image is None:
                    self.skipped += 1
                    continue
                yield VideoFrame(index, time_offset + t, image)
                emitted += 1
                if self._max is not None and emitted >= self._max:
                    return
            if seen == 0:  # nothing decodable: looping would spin forever
                return
            index_offset += seen
            time_offset += last_t + step

    @property
    def finite(self) -> bool:
        """Whether the source ends: a file or folder read without ``loop``."""
        live = self.source.startswith("camera ") or "://" in self.source
        return not live and not self._loop

    @property
    def length(self) -> int | None:
        """Frames this reader will yield as the file or folder says, or None when unknown (a
        camera, a stream, a loop without ``max_frames``, a container that does not say).
        Damaged frames skipped on the way make the real count smaller."""
        if self._folder is not None:
            per_pass: int | None = len(self._folder)
        elif self._container is not None and self.finite:
            per_pass = int(self._container.streams.video[0].frames) or None
        else:
            per_pass = None
        if per_pass is not None:
            per_pass = -(-per_pass // self._every)
        if self._loop or per_pass is None:
            return self._max
        return per_pass if self._max is None else min(per_pass, self._max)

    def __iter__(self) -> FrameReader:
        return self

    def __next__(self) -> VideoFrame:
        return next(self._frames)

    def close(self) -> None:
        """Stop reading and release the decoder."""
        self._frames.close()
        if self._container is not None:
            self._container.close()
            self._container = None

    def __enter__(self) -> FrameReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def read_frames(
    source: Source,
    *,
    every: int = 1,
    max_frames: int | None = None,
    loop: bool = False,
    options: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> FrameReader:
    """Open ``source`` and iterate over its frames.

    Args:
        source: a video file, an image folder, a camera index or a stream URL.
        every: keep every ``every``-th decoded frame (indices ``0, every, 2 * every, ...``).
        max_frames: stop after this many frames (``None``: until the source ends).
        loop: start a file or folder over when it ends (endless with ``max_frames=None``).
        options: FFmpeg options for ``av.open`` (e.g. ``{"rtsp_transport": "tcp"}``).
        timeout: seconds FFmpeg waits on a network source.

    Returns:
        A :class:`FrameReader`; its ``skipped`` counts damaged packets and unreadable images.

    Raises:
        InvalidInputError: bad ``every``, ``max_frames`` or source type.
        DatasetError: the source cannot be opened, has no video stream, or is an image folder
            without images.
        MissingDependencyError: PyAV (or PIL, for folders) is not installed.
    """
    return FrameReader(
        source, every=every, max_frames=max_frames, loop=loop, options=options, timeout=timeout
    )
