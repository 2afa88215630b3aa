"""Where an ingested frame's time goes: CPU and wall time per step of ``IngestService.ingest``.

The same data as ``bench_ingest.py`` (an index of ``--index-size`` clustered vectors preloaded,
then 64-frame batches of ~10 KB JPEGs, 10% near duplicates), but in one process and one thread,
with each step of the ingest timed: the body's decode (``curator.wire.decode_batch``), the
content checks (``--check-workers`` processes, 0 = in this thread), staging the images, the
section under the dedup lock and, inside it, the FAISS search and add, the catalog rows and the
warehouse outbox rows; then the outbox drained into a local SQLite warehouse, as the server's
drainer thread does. CPU time is this thread's (``time.thread_time``): FAISS, SQLite and the
file system count where they run on it, the check workers' CPU does not. The figures are per
frame; ``lock_section`` is what bounds a one-process server's batches per second.

Run from the repository root::

    python benchmarks/ingest_phases.py --out benchmarks/results/ingest_phases.json
"""

from __future__ import annotations

import argparse
import functools
import json
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from bench_ingest import base_images, payloads, preload, scene_vectors, unit
from machine import command_line, describe_machine

from curator.wire import decode_batch

STEPS = {  # the name reported -> (where it lives, the attribute timed)
    "checks": ("service", "_content_problems"),
    "stage_images": ("service", "_stage_blobs"),
    "lock_section": ("service", "_decide_and_commit"),
    "faiss_search": ("dedup", "check"),
    "faiss_add": ("dedup", "accept"),
    "catalog_rows": ("catalog", "record"),
    "outbox_rows": ("service", "_enqueue"),
    "discard_staged": ("service", "_discard_staged"),
}


class Clocks:
    """CPU and wall seconds per step name."""

    def __init__(self) -> None:
        self.cpu: Counter[str] = Counter()
        self.wall: Counter[str] = Counter()

    def timed(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            cpu, wall = time.thread_time(), time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.cpu[name] += time.thread_time() - cpu
                self.wall[name] += time.perf_counter() - wall

        return run


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--index-size", type=int, default=100_000, help="vectors preloaded")
    parser.add_argument("--batches", type=int, default=40, help="timed 64-frame batches")
    parser.add_argument("--check-workers", type=int, default=1, help="image check processes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/ingest_phases.json"))
    args = parser.parse_args(argv)

    from server.auth import Principal, Role
    from server.ingest import IngestService
    from server.warehouse import SqliteSink

    rng = np.random.default_rng(args.seed)
    shape = argparse.Namespace(batch=64, dim=128, quality=90)
    clocks = Clocks()
    with tempfile.TemporaryDirectory(prefix="ingest-phases-") as tmp:
        data_dir = Path(tmp) / "data"
        centers = unit(rng.standard_normal((1000, shape.dim)))
        index = scene_vectors(args.index_size, centers, rng)
        pre = preload(data_dir, index, rng)
        print(f"preload: {args.index_size} vectors in {pre['seconds']} s")
        bodies = payloads(args.batches + 2, shape, index, centers, rng, 1, base_images(168, 224))
        service = IngestService.open(data_dir, check_workers=args.check_workers)
        sink = SqliteSink(Path(tmp) / "warehouse.sqlite")
        try:
            service.outbox.drain(sink, batch_size=5000)  # the preload's rows, untimed
            owners = {"service": service, "dedup": service.dedup, "catalog": service.catalog}
            for name, (owner, attr) in STEPS.items():
                target = owners[owner]
                setattr(target, attr, clocks.timed(name, getattr(target, attr)))
            device = Principal(token_id="bench", role=Role.DEVICE, device_id="cam-01")
            decode = clocks.timed("decode_body", decode_batch)
            ingest = clocks.timed("ingest", service.ingest)
            drain = clocks.timed("warehouse_drain", service.outbox.drain)
            for body in bodies[:2]:  # warm-up: the check workers start
                service.ingest(decode_batch(body), device)
            clocks.cpu.clear()
            clocks.wall.clear()
            for body in bodies[2:]:
                ingest(decode(body), device)
            drain(sink, batch_size=5000)
        finally:
            sink.close()
            service.close()
    frames = args.batches * shape.batch
    order = ["decode_body", "ingest", *STEPS, "warehouse_drain"]
    result = {
        "frames": frames,
        "index_size": args.index_size,
        "check_workers": args.check_workers,
        "us_per_frame": {
            name: {
                "cpu": round(clocks.cpu[name] / frames * 1e6, 1),
                "wall": round(clocks.wall[name] / frames * 1e6, 1),
            }
            for name in order
        },
        "machine": describe_machine(),
        "command": command_line(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    for name in order:
        t = result["us_per_frame"][name]
        print(f"{name:16s} cpu {t['cpu']:7.1f} us/frame   wall {t['wall']:7.1f} us/frame")
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":  # the check workers (spawn) import this module again
    main()
