"""Benchmark pool selection: k-center greedy choosing ``k`` of ``n`` embeddings, and the default.

Data: a mixture of Gaussians, ``--clusters`` centres drawn from a standard normal in ``--dim``
dimensions and each point a random centre plus Gaussian noise of standard deviation ``--spread``
per dimension (float32), with 10-class logits loosely tied to the cluster for the strategies that
need probabilities.

Timed, each ``--repeats`` times (the median is reported, every pass is kept in the JSON with the
1-minute load average before and after, because a shared machine makes single passes noisy):

- ``kcenter`` through ``curator.selection.select``: the lazy exact search
  (:class:`curator.selection.coverage.FarthestPointSearch`), goal <= 10 s on two cores;
- the baseline: the same greedy with the textbook vectorised update, one float32
  matrix-vector product over the whole pool per step
  (:class:`curator.selection.coverage.CoverageTracker`); ``ratio = baseline / kcenter``;
  both covering radii are recorded to show they agree;
- ``random`` selection of the same ``k``;
- the default strategy (``uncertainty_diversity``) for the same ``n`` and ``k``.

Example::

    python benchmarks/bench_selection.py --n 100000 --k 1000 --dim 128 --seed 0 \\
        --out benchmarks/results/bench_selection.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from machine import command_line, describe_machine

from curator.diversity import l2_normalize
from curator.selection import DEFAULT_STRATEGY, covering_radius, select
from curator.selection.coverage import CoverageTracker

GOAL_SECONDS = 10.0


def mixture(
    n: int, dim: int, clusters: int, spread: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``(n, dim)`` float32 points around ``clusters`` centres and ``(n, 10)`` logits."""
    centres = rng.standard_normal((clusters, dim), dtype=np.float32)
    which = rng.integers(clusters, size=n)
    x = centres[which] + np.float32(spread) * rng.standard_normal((n, dim), dtype=np.float32)
    logits = rng.standard_normal((n, 10), dtype=np.float32) * np.float32(1.5)
    logits[np.arange(n), which % 10] += np.float32(2.0)
    return x, logits


def full_update_greedy(embeddings: np.ndarray, k: int, seed: int) -> np.ndarray:
    """The baseline: k-center greedy updating every point's distance at every step."""
    x = l2_normalize(embeddings)
    tracker = CoverageTracker(x, np.empty(0, np.int64))
    picks = np.empty(k, np.int64)
    picks[0] = np.random.default_rng(seed).permutation(len(x))[0]  # kcenter's first centre
    tracker.add(int(picks[0]))
    for step in range(1, k):
        picks[step] = int(np.argmax(tracker.sq_dist))
        tracker.add(int(picks[step]))
    return picks


def timed(fn: Callable[[], np.ndarray], repeats: int) -> dict[str, Any]:
    """Median wall and CPU seconds over ``repeats`` calls, every pass, and the last result."""
    walls, cpus, loads = [], [], []
    result = np.empty(0)
    for _ in range(repeats):
        load_before = os.getloadavg()[0]
        wall, cpu = time.perf_counter(), time.process_time()
        result = fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
        loads.append([load_before, os.getloadavg()[0]])
    return {
        "seconds": statistics.median(walls),
        "cpu_seconds": statistics.median(cpus),
        "passes_seconds": walls,
        "passes_cpu_seconds": cpus,
        "load_average_1m": loads,
        "result": result,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time k-center greedy (and the default pool strategy) choosing k of n "
        "clustered embeddings, against a full-update baseline and random selection."
    )
    parser.add_argument("--n", type=int, default=100_000, help="pool size (default 100000)")
    parser.add_argument("--k", type=int, default=1000, help="items to choose (default 1000)")
    parser.add_argument("--dim", type=int, default=128, help="embedding dimension (default 128)")
    parser.add_argument("--seed", type=int, default=0, help="seed for data and selection")
    parser.add_argument("--clusters", type=int, default=50, help="Gaussian centres (default 50)")
    parser.add_argument(
        "--spread", type=float, default=0.3, help="noise std per dimension (default 0.3)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="timing passes (default 3)")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("benchmarks/results/bench_selection.json"),
        help="where to write the JSON results",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rng = np.random.default_rng(args.seed)
    x, logits = mixture(args.n, args.dim, args.clusters, args.spread, rng)
    print(f"data: {args.n} x {args.dim} float32, {args.clusters} clusters", flush=True)

    kcenter = timed(lambda: select("kcenter", k=args.k, embeddings=x, rng=args.seed), args.repeats)
    print(f"kcenter (lazy):       {kcenter['seconds']:.3f} s", flush=True)
    baseline = timed(lambda: full_update_greedy(x, args.k, args.seed), args.repeats)
    print(f"baseline (full):      {baseline['seconds']:.3f} s", flush=True)
    rand = timed(lambda: select("random", k=args.k, embeddings=x, rng=args.seed), args.repeats)
    print(f"random:               {rand['seconds']:.4f} s", flush=True)
    default = timed(
        lambda: select(DEFAULT_STRATEGY, k=args.k, embeddings=x, logits=logits, rng=args.seed),
        args.repeats,
    )
    print(f"{DEFAULT_STRATEGY}: {default['seconds']:.3f} s", flush=True)

    ratio = baseline["seconds"] / kcenter["seconds"]
    radius = covering_radius(x, kcenter["result"])
    baseline_radius = covering_radius(x, baseline["result"])
    print(
        f"ratio baseline/kcenter: {ratio:.2f}x; goal {GOAL_SECONDS:.0f} s: "
        f"{'met' if kcenter['seconds'] <= GOAL_SECONDS else 'MISSED'}; covering radius "
        f"{radius:.4f} (baseline {baseline_radius:.4f})",
        flush=True,
    )

    def public(t: dict[str, Any]) -> dict[str, Any]:
        return {key: value for key, value in t.items() if key != "result"}

    report = {
        "n": args.n,
        "k": args.k,
        "dim": args.dim,
        "seed": args.seed,
        "clusters": args.clusters,
        "spread": args.spread,
        "repeats": args.repeats,
        "seconds": kcenter["seconds"],
        "goal_seconds": GOAL_SECONDS,
        "goal_met": kcenter["seconds"] <= GOAL_SECONDS,
        "baseline": "k-center greedy with a full float32 matrix-vector update per step",
        "baseline_seconds": baseline["seconds"],
        "ratio": ratio,
        "random_seconds": rand["seconds"],
        "default_strategy": DEFAULT_STRATEGY,
        "default_strategy_seconds": default["seconds"],
        "covering_radius": radius,
        "baseline_covering_radius": baseline_radius,
        "timings": {
            "kcenter": public(kcenter),
            "baseline": public(baseline),
            "random": public(rand),
            DEFAULT_STRATEGY: public(default),
        },
        "machine": describe_machine(),
        "command": command_line(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
