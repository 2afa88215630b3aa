""":class:`ImageChecker`: :func:`inspect_image` over a batch, in this thread or in worker processes.

The checks are CPU-bound Python and C; in one server process they share one GIL with
everything else a request does. With ``workers > 0`` they run in a pool of that many worker
processes (started on first use, ``spawn``), so a one-process server checks images on other
cores while its threads do the rest. A worker that dies (a decoder crash on hostile bytes, the
OOM killer) costs no request: the pool is rebuilt for later batches, and the batches it was
checking are checked again one image at a time, each batch in a worker of its own, so an image is
rejected ``corrupt`` only when it kills its own worker, never for another request's image.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from curator.errors import InvalidInputError
from server.errors import ImageRejected, Unavailable
from server.images.inspection import inspect_image

__all__ = ["ImageCheck", "ImageChecker"]

logger = logging.getLogger("server.images")

ImageCheck = tuple[bytes, str, tuple[int, int]]
"""One image to check: ``(encoded bytes, declared format, declared (width, height))``."""

CheckImages = Callable[[Sequence[ImageCheck], int, int], list[str | None]]
"""``(images, max_pixels, max_bytes) -> reasons``; :func:`check_images` is the real one."""


def check_images(images: Sequence[ImageCheck], max_pixels: int, max_bytes: int) -> list[str | None]:
    """The rejection reason of each image (``"code: detail"``), None where it passes."""
    reasons: list[str | None] = []
    for data, fmt, size in images:
        try:
            inspect_image(
                data,
                declared_format=fmt,
                declared_size=size,
                max_pixels=max_pixels,
                max_bytes=max_bytes,
            )
            reasons.append(None)
        except ImageRejected as exc:
            reasons.append(str(exc))
    return reasons


class ImageChecker:
    """Checks the images of a batch, the same answers wherever they run.

    Args:
        workers: worker processes; 0 checks in the calling thread.
        max_pixels: the most pixels an image may have.
        max_bytes: the largest encoded image accepted.
        check: the function that checks a list of images; a module-level function, so that
            worker processes can import it (tests pass one that crashes on cue).

    Raises:
        InvalidInputError: ``workers`` is negative.
    """

    def __init__(
        self,
        *,
        workers: int = 0,
        max_pixels: int,
        max_bytes: int,
        check: CheckImages = check_images,
    ) -> None:
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
            raise InvalidInputError(f"workers must be an integer >= 0, got {workers!r}")
        self.workers = workers
        self._check = check
        self._limits = (max_pixels, max_bytes)
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self._closed = False

    def reasons(self, images: Sequence[ImageCheck]) -> list[str | None]:
        """One reason or None per image, in order.

        Raises:
            Unavailable: the checker was closed (the server is stopping).
        """
        if not images:
            return []
        if self.workers == 0:
            return self._check(images, *self._limits)
        size = -(-len(images) // self.workers)  # one part per worker
        parts = [images[lo : lo + size] for lo in range(0, len(images), size)]
        try:
            return [r for part in self._gather(parts) for r in part]
        except BrokenProcessPool:
            logger.warning("an image check worker died; checking the batch one image at a time")
            return self._one_by_one(images)

    def close(self) -> None:
        """Stop the workers (idempotent); later checks raise :class:`Unavailable`."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def _gather(self, parts: Sequence[Sequence[ImageCheck]]) -> list[list[str | None]]:
        """Check ``parts`` on the shared pool, one task each; a pool found broken is dropped
        (the next call starts a new one) and :class:`BrokenProcessPool` raised."""
        pool = self._executor()
        try:  # a pool found broken raises at submit, one that breaks now at result
            futures: list[Future[list[str | None]]] = [
                pool.submit(self._check, list(part), *self._limits) for part in parts
            ]
            return [f.result() for f in futures]
        except BrokenProcessPool:
            self._replace(pool)
            raise
        except (CancelledError, RuntimeError) as exc:  # shut down under us by close()
            if self._closed:
                raise Unavailable("the image checker is closed: the server is stopping") from exc
            raise

    def _one_by_one(self, images: Sequence[ImageCheck]) -> list[str | None]:
        """Each image alone, in a worker of this call's own: another request's image that
        kills the shared pool's workers cannot take one of these down with it, so an image is
        rejected only when it killed its own worker."""
        reasons: list[str | None] = []
        pool: ProcessPoolExecutor | None = None
        try:
            for image in images:
                if self._closed:
                    raise Unavailable("the image checker is closed: the server is stopping")
                pool = pool or self._new_pool(1)
                try:
                    (reason,) = pool.submit(self._check, [image], *self._limits).result()
                except BrokenProcessPool:
                    logger.warning("an image killed its check worker; rejected")
                    reason = "corrupt: the image decoder crashed on it"
                    pool.shutdown(wait=True)  # dead already: joins, closes its pipes
                    pool = None
                reasons.append(reason)
        finally:
            if pool is not None:
                pool.shutdown(wait=True)
        return reasons

    def _executor(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._closed:
                raise Unavailable("the image checker is closed: the server is stopping")
            if self._pool is None:
                self._pool = self._new_pool(self.workers)
            return self._pool

    @staticmethod
    def _new_pool(workers: int) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        """Drop ``broken`` so the next check starts a new pool, and shut it down; only the
        thread that drops it does (``shutdown`` is not safe to run twice at once), and not
        when :meth:`close` took it first."""
        with self._lock:
            if self._pool is not broken:
                return
            self._pool = None
        broken.shutdown(wait=True, cancel_futures=True)  # dead already: joins, closes pipes

    def __repr__(self) -> str:
        return f"ImageChecker(workers={self.workers})"
