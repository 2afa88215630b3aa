"""A real ingest process killed with SIGKILL: restore + catch-up loses no accepted frame.

The child process runs the server's ingest loop on a real SQLite catalog: under the version's
lock, ``check``, commit the accepted frames (``ingest_seq`` from SQLite), ``accept``; and a
snapshot every few batches. The parent kills it at a random moment (maybe mid-snapshot), then
restores from the snapshot plus the catalog and compares with the catalog. Each round's child
starts from the previous round's snapshot, so restores after kills are chained.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from server.dedup import FleetDedup

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]

CHILD = textwrap.dedent(
    """
    import sqlite3, sys
    import numpy as np
    from server.dedup import FleetDedup

    db_path, snapshots, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
    db = sqlite3.connect(db_path, isolation_level=None)
    db.execute("pragma journal_mode=wal")
    db.execute("create table if not exists frames "
               "(ingest_seq integer primary key autoincrement, mv text, vector blob)")

    def catch_up(mv, watermark):
        rows = db.execute("select ingest_seq, vector from frames where mv = ? and ingest_seq > ?"
                          " order by ingest_seq", (mv, watermark))
        return [(i, np.frombuffer(v, np.float32)) for i, v in rows]

    versions = lambda: [r[0] for r in db.execute("select distinct mv from frames")]
    dedup = FleetDedup.restore(snapshots, catch_up, model_versions=versions)
    rng = np.random.default_rng(seed)
    for batch in range(10**6):
        mv = ("cam-model@1", "cam-model@2")[batch % 2]
        x = rng.standard_normal((16, 8 if batch % 2 else 12)).astype(np.float32)
        x[12:] = x[:4]  # copies within the batch
        with dedup.lock(mv):
            kept = [i for i, d in enumerate(dedup.check(mv, x)) if not d.is_duplicate]
            db.execute("begin")
            ids = [db.execute("insert into frames (mv, vector) values (?, ?)",
                              (mv, x[i].tobytes())).lastrowid for i in kept]
            db.execute("commit")
            dedup.accept(mv, ids, x[kept])
        if batch % 4 == 3:
            dedup.snapshot(snapshots)
        if batch == 8:
            print("running", flush=True)
    """
)


def catalog_rows(db_path: Path) -> dict[str, list[tuple[int, np.ndarray]]]:
    db = sqlite3.connect(db_path)
    try:
        out: dict[str, list[tuple[int, np.ndarray]]] = {}
        for seq, mv, vector in db.execute("select ingest_seq, mv, vector from frames"):
            out.setdefault(mv, []).append((seq, np.frombuffer(vector, np.float32)))
        return out
    finally:
        db.close()


@pytest.mark.parametrize("rounds", [4])
def test_kill_9_during_ingest_and_snapshots_loses_nothing(tmp_path: Path, rounds: int) -> None:
    db_path, snapshots = tmp_path / "catalog.sqlite", tmp_path / "dedup"
    script = tmp_path / "ingest.py"
    script.write_text(CHILD)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    rng = np.random.default_rng(0)
    for round_ in range(rounds):
        child = subprocess.Popen(
            [sys.executable, str(script), str(db_path), str(snapshots), str(round_)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )
        assert child.stdout is not None
        line = child.stdout.readline()
        if line != "running\n":
            child.kill()
            pytest.fail(f"child failed: {line!r} {child.communicate()[1]}")
        with contextlib.suppress(subprocess.TimeoutExpired):  # let it ingest and snapshot
            child.wait(timeout=float(rng.uniform(0.05, 0.4)))
        os.kill(child.pid, signal.SIGKILL)
        child.communicate()
        assert child.returncode == -signal.SIGKILL

        rows = catalog_rows(db_path)

        def catch_up(
            mv: str, watermark: int, rows: dict[str, list[tuple[int, np.ndarray]]] = rows
        ) -> Iterator[tuple[int, np.ndarray]]:
            return iter([(i, v) for i, v in rows.get(mv, []) if i > watermark])

        restored = FleetDedup.restore(snapshots, catch_up, model_versions=list(rows))
        stats = restored.stats()["model_versions"]
        assert {mv: s["vectors"] for mv, s in stats.items()} == {
            mv: len(r) for mv, r in rows.items()
        }
        for mv, r in rows.items():
            ids = [i for i, _ in r]
            found = restored.check(mv, np.stack([v for _, v in r]))
            assert [d.duplicate_of_id for d in found] == ids
