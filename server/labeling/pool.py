"""Which frames to hand out next: the label pool, chosen by a strategy of
:mod:`curator.selection.pool`.

The pool of a model version is every accepted frame with an embedding in that version's space.
Frames labeled or under an open lease stay in it as *excluded* items, which the diversity
strategies treat as covered, so a new batch moves away from what colleagues are already on.
Versions are visited newest first (by their newest frame's ``ingest_seq``) until the batch is
full; a frame embedded by several versions is picked at most once.

A labeler who gave a frame back (released its lease: the labeling page's skip) is not handed
that frame again until the skip cool-down has passed; for that labeler it counts as excluded,
colleagues still get it. An expired lease is no skip: its frame may come straight back.

Probabilities are used only where the frame was scored by the same version (its own
``model_version``). When a strategy needs probabilities and an available frame has none (an
embedding-only model), that version's batch falls back to :data:`FALLBACK_STRATEGY` (k-center
diversity over the embeddings).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass

import numpy as np

from curator.selection.pool import STRATEGIES, select

__all__ = ["FALLBACK_STRATEGY", "Pick", "choose_frames", "skipped_frames"]

FALLBACK_STRATEGY = "kcenter"
"""The strategy used where probabilities are missing: greedy k-center over the embeddings."""


@dataclass(frozen=True)
class Pick:
    """A chosen frame, the embedding space it was chosen in and the strategy that chose it."""

    frame_id: str
    model_version: str
    strategy: str


def _versions(conn: sqlite3.Connection) -> list[str]:
    rows = conn.execute(
        "SELECT e.model_version, max(e.ingest_seq) AS newest FROM embeddings e"
        " GROUP BY e.model_version ORDER BY newest DESC"
    )
    return [r[0] for r in rows]


def _pool(
    conn: sqlite3.Connection, model_version: str, now: str
) -> list[tuple[str, bytes, str | None, bool]]:
    """``(frame_id, embedding, probabilities or None, excluded)`` of one version's pool."""
    rows = conn.execute(
        "SELECT f.frame_id, e.embedding,"
        " CASE WHEN f.model_version = e.model_version THEN f.class_probabilities END,"
        " EXISTS (SELECT 1 FROM labels l WHERE l.frame_id = f.frame_id)"
        " OR EXISTS (SELECT 1 FROM label_leases x WHERE x.frame_id = f.frame_id"
        "            AND x.released_at IS NULL AND x.expires_at > ?)"
        " FROM embeddings e JOIN frames f ON f.ingest_seq = e.ingest_seq"
        " WHERE e.model_version = ? AND f.status = 'accepted' ORDER BY e.ingest_seq",
        (now, model_version),
    )
    return [(r[0], r[1], r[2], bool(r[3])) for r in rows]


def skipped_frames(conn: sqlite3.Connection, holder: str, since: str) -> frozenset[str]:
    """The frames ``holder`` released (skipped) after ``since`` (ISO UTC text, as stored)."""
    rows = conn.execute(
        "SELECT DISTINCT frame_id FROM label_leases WHERE holder = ?"
        " AND release_reason = 'released' AND released_at > ?",
        (holder, since),
    )
    return frozenset(r[0] for r in rows)


def _probabilities(raw: list[str | None], available: np.ndarray) -> np.ndarray | None:
    """``(N, C)`` probabilities if every available item has them with one ``C``, else None;
    excluded items without them get a uniform row (their scores do not count)."""
    parsed = [None if p is None else json.loads(p) for p in raw]
    widths = {len(p) for p, a in zip(parsed, available, strict=True) if a and p is not None}
    if len(widths) != 1 or any(p is None for p, a in zip(parsed, available, strict=True) if a):
        return None
    (c,) = widths
    uniform = [1.0 / c] * c
    return np.asarray(
        [p if p is not None and len(p) == c else uniform for p in parsed], dtype=np.float64
    )


def choose_frames(
    conn: sqlite3.Connection,
    count: int,
    now: str,
    *,
    strategy: str,
    rng: np.random.Generator,
    params: dict[str, object] | None = None,
    skipped: frozenset[str] = frozenset(),
) -> list[Pick]:
    """Up to ``count`` unlabeled frames without an open lease and not in ``skipped``, in
    selection order.

    Run it inside the transaction that then leases the picks, so no other writer can lease the
    same frames in between.

    Args:
        conn: a connection on the catalog's file.
        count: how many to pick, ``>= 0``.
        now: the current time as stored (ISO UTC text); leases expiring at or before it are
            treated as closed.
        strategy: a name in :data:`curator.selection.pool.STRATEGIES`.
        rng: breaks ties (and seeds randomised strategies).
        params: the strategy's own parameters.
        skipped: frames never picked this time though otherwise available (the caller's
            recent skips, :func:`skipped_frames`); like labeled ones they count as covered.

    Raises:
        ValueError: an unknown strategy (the message lists the valid ones).
    """
    if strategy not in STRATEGIES:
        raise ValueError(
            f"unknown selection strategy {strategy!r}; valid: {', '.join(sorted(STRATEGIES))}"
        )
    picks: list[Pick] = []
    taken: set[str] = set()
    for version in _versions(conn):
        wanted = count - len(picks)
        if wanted <= 0:
            break
        rows = _pool(conn, version, now)
        excluded = np.array([r[3] or r[0] in taken or r[0] in skipped for r in rows], dtype=bool)
        if not rows or excluded.all():
            continue
        embeddings = np.stack([np.frombuffer(r[1], dtype="<f4") for r in rows])
        probs = _probabilities([r[2] for r in rows], ~excluded)
        name, kwargs = strategy, dict(params or {})
        if "probs" in STRATEGIES[strategy].requires and probs is None:
            name, kwargs = FALLBACK_STRATEGY, {}
        chosen = select(
            name, k=wanted, rng=rng, embeddings=embeddings, probs=probs, exclude=excluded, **kwargs
        )
        for i in chosen.tolist():
            picks.append(Pick(rows[i][0], version, name))
            taken.add(rows[i][0])
    return picks
