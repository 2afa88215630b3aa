"""Distances from a pool to its nearest centre, as k-center style strategies grow the centres.

Points are unit vectors and distances Euclidean, ``|a - b|^2 = 2 - 2 a.b``, in float32.

- :class:`CoverageTracker` keeps every point's squared distance exact, at one matrix-vector
  product over the pool per new centre; for objectives that need every distance each step.
- :class:`FarthestPointSearch` only answers "which point is farthest from the centres", and does
  so exactly while updating only the points that can still be farthest: an active set of
  ``max(4096, N / 32)`` points (smaller pools, up to twice that, are updated in full). The
  others keep stale upper bounds below a threshold ``tau``; when the farthest active point
  falls below ``tau`` they are brought up to date in one matrix-matrix product against the
  centres added since, and a new active set is drawn. On clustered or random 128-d data this
  does several times less work than the full update.
"""

from __future__ import annotations

import numpy as np

from curator._validate import FloatArray
from curator.selection.inputs import IntArray

__all__ = ["CoverageTracker", "FarthestPointSearch", "nearest_sq_distance"]

_CENTRE = np.float32(-1.0)
_CHUNK_ELEMENTS = 1 << 22
_ACTIVE_FRACTION = 32
_MIN_ACTIVE = 4096


def _matvec(x: FloatArray, v: FloatArray, out: FloatArray) -> None:
    """``out = x @ v`` by numpy's own single-threaded loop rather than BLAS.

    A greedy step is one matrix-vector product. Multithreaded OpenBLAS synchronises its threads
    on every call; on a busy machine a 4096 x 128 product then took ~8 ms instead of ~0.1 ms,
    while einsum's loop is memory-bound and steady (measured on the 2-core benchmark machine).
    """
    np.einsum("ij,j->i", x, v, out=out)


def nearest_sq_distance(x: FloatArray, centres: FloatArray) -> FloatArray:
    """Squared Euclidean distance of each unit row of ``x`` to its nearest unit row of ``centres``.

    Args:
        x: ``(N, D)`` float32 unit vectors.
        centres: ``(M, D)`` float32 unit vectors, ``M >= 1``.

    Returns:
        ``(N,)`` float32, clipped at 0; computed in row chunks so memory stays bounded.
    """
    out = np.empty(len(x), np.float32)
    step = max(1, _CHUNK_ELEMENTS // max(1, len(centres)))
    for start in range(0, len(x), step):
        sims = x[start : start + step] @ centres.T
        out[start : start + len(sims)] = 2.0 - 2.0 * sims.max(axis=1)
    return np.maximum(out, 0.0, out=out)


class CoverageTracker:
    """Each point's squared distance to its nearest centre, updated one centre at a time.

    ``sq_dist`` holds ``inf`` while there is no centre and ``-1`` at the centres themselves, so
    ``argmax(sq_dist)`` is always the farthest point that is not yet a centre.

    Args:
        x: ``(N, D)`` float32 unit vectors; kept by reference, not copied.
        centres: ``(M,)`` indices of the initial centres; may be empty.
    """

    def __init__(self, x: FloatArray, centres: IntArray) -> None:
        self.x = x
        self.sq_dist = np.full(len(x), np.inf, np.float32)
        self.n_centres = len(centres)
        self._buf = np.empty(len(x), np.float32)
        if len(centres):
            self.sq_dist[:] = nearest_sq_distance(x, x[centres])
            self.sq_dist[centres] = _CENTRE

    def add(self, i: int) -> None:
        """Make point ``i`` a centre and lower every point's distance accordingly."""
        buf = self._buf
        _matvec(self.x, self.x[i], buf)
        buf *= -2.0
        buf += 2.0
        np.maximum(buf, 0.0, out=buf)
        np.minimum(self.sq_dist, buf, out=self.sq_dist)
        self.sq_dist[i] = _CENTRE
        self.n_centres += 1

    def radius(self) -> float:
        """The covering radius: the largest distance from a point to its nearest centre."""
        if len(self.x) == 0:
            return 0.0
        if self.n_centres == 0:
            return float("inf")
        return float(np.sqrt(max(float(self.sq_dist.max()), 0.0)))


class FarthestPointSearch:
    """Exact farthest-point queries while centres are added (lazy k-center greedy).

    Args:
        x: ``(N, D)`` float32 unit vectors; kept by reference, not copied.
        centres: ``(M,)`` indices of the initial centres; may be empty.

    Invariant: points outside ``active`` that are not centres have a squared distance (an upper
    bound, stale by the centres added since the last refresh) below ``tau``; points in ``active``
    have exact distances. So the farthest active point is the farthest point overall as long
    as its distance is at least ``tau``.
    """

    def __init__(self, x: FloatArray, centres: IntArray) -> None:
        self.x = x
        n = len(x)
        self.sq_dist = np.full(n, np.inf, np.float32)
        if len(centres):
            self.sq_dist[:] = nearest_sq_distance(x, x[centres])
            self.sq_dist[centres] = _CENTRE
        self.centres: list[int] = []
        self.n_centres = len(centres)
        self._synced = 0
        self._target = max(_MIN_ACTIVE, n // _ACTIVE_FRACTION)
        self.active: IntArray = np.empty(0, np.int64)
        self._x_active = x[:0]
        self._sq_active = np.empty(0, np.float32)
        self._buf = np.empty(0, np.float32)
        self.tau = float("inf")

    def _refresh(self) -> None:
        sq = self.sq_dist
        sq[self.active] = self._sq_active
        new = self.centres[self._synced :]
        if new:
            stale = sq >= 0
            stale[self.active] = False
            ids = np.flatnonzero(stale)
            if len(ids):
                sq[ids] = np.minimum(sq[ids], nearest_sq_distance(self.x[ids], self.x[new]))
        self._synced = len(self.centres)
        candidates = np.flatnonzero(sq >= 0)
        if len(candidates) > 2 * self._target:  # else the active set would save little
            cut = len(candidates) - self._target
            self.tau = float(np.partition(sq[candidates], cut)[cut])
            self.active = candidates[sq[candidates] >= self.tau]
        else:
            self.tau = -float("inf")
            self.active = candidates
        self._x_active = self.x[self.active]
        self._sq_active = sq[self.active]
        self._buf = np.empty(len(self.active), np.float32)

    def pop_farthest(self) -> tuple[int, float]:
        """Make the point farthest from every centre a centre; return it and its squared distance.

        Ties go to the lowest index. Only call while some point is not a centre.
        """
        for _ in range(2):
            if len(self.active):
                j = int(np.argmax(self._sq_active))
                best = float(self._sq_active[j])
                if best >= self.tau and best >= 0:
                    self._add(j)
                    return int(self.active[j]), best
            self._refresh()
        raise RuntimeError("pop_farthest() called with every point a centre")  # pragma: no cover

    def _add(self, j: int) -> None:
        i = int(self.active[j])
        buf = self._buf
        _matvec(self._x_active, self.x[i], buf)
        buf *= -2.0
        buf += 2.0
        np.maximum(buf, 0.0, out=buf)
        np.minimum(self._sq_active, buf, out=self._sq_active)
        self._sq_active[j] = _CENTRE
        self.sq_dist[i] = _CENTRE
        self.centres.append(i)
        self.n_centres += 1

    def radius(self) -> float:
        """The exact covering radius of the current centres (``inf`` with none)."""
        if len(self.x) == 0:
            return 0.0
        if self.n_centres == 0:
            return float("inf")
        if not (len(self.active) and float(self._sq_active.max()) >= self.tau):
            self._refresh()  # the farthest point may be stale: bring everything up to date
        top = float(self._sq_active.max()) if len(self.active) else 0.0
        return float(np.sqrt(max(top, 0.0)))
