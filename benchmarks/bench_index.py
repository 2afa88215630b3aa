"""Benchmark the production vector index (FaissIndex, HNSW) against exact search.

Data: clustered unit vectors, a mixture of Gaussians on the sphere. ``--centres`` centres are
drawn uniformly on the sphere; a point is ``normalise(centre + spread * g / sqrt(dim))`` with
``g`` standard normal, so its noise has norm about ``spread``. Queries come from the same
distribution (fresh draws, not base points), so each query's nearest neighbour is a different
point of its cluster (about ``n / centres`` points each), only slightly closer than the rest of
that cluster: isotropic noise in all ``dim`` directions is a hard case for approximate search.

QPS figures are medians over ``--repeats`` timing passes (all passes are kept in the JSON, with
the 1-minute load average before and after), because a shared machine makes single passes noisy.

For each size the script builds the HNSW index with the given settings and reports build time,
single-query QPS (one query per ``FaissIndex.search`` call, ``k=10``), batched QPS (all queries
in one call), recall@1 and recall@10 against exact search, and the single-query QPS of the exact
flat index measured in the same run on ``--exact-queries`` queries. Ground truth comes from a
batched flat search.

Example::

    python benchmarks/bench_index.py --sizes 100000 1000000 --dim 128 \\
        --out benchmarks/results/bench_index.json
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from machine import command_line, describe_machine

from curator.index import FaissIndex

K = 10
PRODUCTION = {
    name: p.default
    for name, p in inspect.signature(FaissIndex).parameters.items()
    if p.default is not inspect.Parameter.empty
}


def clustered_unit_vectors(
    n: int, centres: np.ndarray, spread: float, rng: np.random.Generator
) -> np.ndarray:
    """``n`` unit vectors: a random centre each, plus Gaussian noise of norm ~``spread``."""
    dim = centres.shape[1]
    out = np.empty((n, dim), np.float32)
    step = 100_000
    for start in range(0, n, step):
        m = min(step, n - start)
        noise = rng.standard_normal((m, dim), dtype=np.float32) * np.float32(spread / np.sqrt(dim))
        x = centres[rng.integers(len(centres), size=m)] + noise
        out[start : start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def random_centres(count: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    c = rng.standard_normal((count, dim), dtype=np.float32)
    return c / np.linalg.norm(c, axis=1, keepdims=True)


def single_query_qps(
    index: FaissIndex, queries: np.ndarray, repeats: int
) -> tuple[float, list[float], np.ndarray]:
    """Median queries per second over ``repeats`` passes, one ``search`` call per query.

    Returns the median, every pass's rate and the ids found.
    """
    found = np.empty((len(queries), K), np.int64)
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(len(queries)):
            found[i] = index.search(queries[i : i + 1], K)[1][0]
        rates.append(len(queries) / (time.perf_counter() - start))
    return float(np.median(rates)), rates, found


def batched_qps(index: FaissIndex, queries: np.ndarray, repeats: int) -> float:
    """Median queries per second over ``repeats`` calls with every query at once."""
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        index.search(queries, K)
        rates.append(len(queries) / (time.perf_counter() - start))
    return float(np.median(rates))


def recall(found: np.ndarray, truth: np.ndarray, at: int) -> float:
    """Mean fraction of the true top-``at`` ids found among the first ``at`` results."""
    hits = [len(np.intersect1d(f[:at], t[:at])) for f, t in zip(found, truth, strict=True)]
    return float(np.mean(hits) / at)


def bench_size(
    n: int, base: np.ndarray, queries: np.ndarray, args: argparse.Namespace
) -> dict[str, Any]:
    dim = base.shape[1]
    ids = np.arange(n, dtype=np.int64)

    def log(msg: str) -> None:
        print(f"[n={n}] {msg}", flush=True)

    exact = FaissIndex(dim, kind="flat")
    exact.add(ids, base[:n])
    t = time.perf_counter()
    _, truth = exact.search(queries, K)
    log(f"ground truth by batched flat search: {time.perf_counter() - t:.1f} s")
    exact_qps, exact_rates, exact_found = single_query_qps(
        exact, queries[: args.exact_queries], args.repeats
    )
    if not (exact_found[:, 0] == truth[: args.exact_queries, 0]).all():
        log("warning: single and batched exact search disagree on top-1 (ties?)")
    log(f"exact single-query QPS: {exact_qps:.1f}")
    del exact

    index = FaissIndex(
        dim, kind="hnsw", m=args.m, ef_construction=args.ef_construction, ef_search=args.ef_search
    )
    t = time.perf_counter()
    index.add(ids, base[:n])
    build = time.perf_counter() - t
    log(f"HNSW build ({index.description}): {build:.1f} s")

    entries = []
    for ef in [args.ef_search, *[e for e in args.sweep_ef if e != args.ef_search]]:
        index.ef_search = ef
        load_before = os.getloadavg()[0]
        qps_single, single_rates, found = single_query_qps(index, queries, args.repeats)
        qps_batched = batched_qps(index, queries, args.repeats)
        entry = {
            "n": n,
            "dim": dim,
            "index": f"HNSW{args.m},efConstruction={args.ef_construction},efSearch={ef}",
            "k": K,
            "queries": len(queries),
            "build_seconds": round(build, 2),
            "qps_single": round(qps_single, 1),
            "qps_batched": round(qps_batched, 1),
            "recall_at_1": round(recall(found, truth, 1), 4),
            "recall_at_10": round(recall(found, truth, 10), 4),
            "exact_qps_single": round(exact_qps, 1),
            "exact_queries_timed": args.exact_queries,
            "speedup_vs_exact": round(qps_single / exact_qps, 1),
            "qps_single_passes": [round(r, 1) for r in single_rates],
            "exact_qps_single_passes": [round(r, 1) for r in exact_rates],
            "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        }
        log(
            f"efSearch={ef}: single {qps_single:.0f} q/s, batched {qps_batched:.0f} q/s, "
            f"recall@1 {entry['recall_at_1']}, recall@10 {entry['recall_at_10']}"
        )
        entries.append(entry)
    return {**entries[0], "ef_sweep": entries[1:]} if args.sweep_ef else entries[0]


def print_table(results: list[dict[str, Any]]) -> None:
    rows = [r2 for r in results for r2 in [r, *r.get("ef_sweep", [])]]
    header = (
        f"{'n':>9} {'index':<38} {'build s':>8} {'single q/s':>10} {'batch q/s':>10} "
        f"{'R@1':>6} {'R@10':>6} {'exact q/s':>9} {'speedup':>8}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['n']:>9} {r['index']:<38} {r['build_seconds']:>8.1f} {r['qps_single']:>10.0f} "
            f"{r['qps_batched']:>10.0f} {r['recall_at_1']:>6.3f} {r['recall_at_10']:>6.3f} "
            f"{r['exact_qps_single']:>9.1f} {r['speedup_vs_exact']:>7.0f}x"
        )


def plot(report: dict[str, Any], path: Path) -> None:
    """Recall@1 against single-query QPS, one curve per size, exact QPS as dashed lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in report["results"]:
        rows = sorted([r, *r.get("ef_sweep", [])], key=lambda e: e["qps_single"])
        (line,) = ax.plot(
            [e["qps_single"] for e in rows],
            [e["recall_at_1"] for e in rows],
            "o-",
            label=f"HNSW, n={r['n']:,}",
        )
        for e in rows:
            ef = e["index"].rsplit("efSearch=", 1)[1]
            ax.annotate(f"ef={ef}", (e["qps_single"], e["recall_at_1"]), fontsize=7)
        ax.axvline(
            r["exact_qps_single"], color=line.get_color(), ls="--", lw=1,
            label=f"exact flat, n={r['n']:,}",
        )  # fmt: skip
    ax.axhline(0.98, color="grey", ls=":", lw=1)
    ax.axvline(2000, color="grey", ls=":", lw=1, label="goal: 2,000 q/s at recall@1 0.98")
    ax.set_xscale("log")
    ax.set_xlabel("single queries per second (one search call per query, k=10)")
    ax.set_ylabel("recall@1 vs exact search")
    m = report["machine"]
    ax.set_title(f"FaissIndex, {report['results'][0]['dim']}-d clustered vectors, "
                 f"{m['cpu_count']} CPUs ({m['cpu_model']})", fontsize=9)  # fmt: skip
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Benchmark FaissIndex HNSW against exact flat search on clustered vectors.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--sizes", type=int, nargs="+", default=[100_000], help="index sizes to test")
    p.add_argument("--dim", type=int, default=128, help="vector dimension")
    p.add_argument("--queries", type=int, default=10_000, help="queries per size")
    p.add_argument(
        "--exact-queries", type=int, default=200, help="queries timed one by one on flat search"
    )
    p.add_argument("--centres", type=int, default=1000, help="mixture components")
    p.add_argument("--spread", type=float, default=1.0, help="noise norm around each centre")
    p.add_argument("--m", type=int, default=PRODUCTION["m"], help="HNSW M")
    p.add_argument(
        "--ef-construction",
        type=int,
        default=PRODUCTION["ef_construction"],
        help="HNSW efConstruction",
    )
    p.add_argument(
        "--ef-search",
        type=int,
        default=PRODUCTION["ef_search"],
        help="HNSW efSearch for the main entry",
    )
    p.add_argument(
        "--sweep-ef", type=int, nargs="*", default=[], help="extra efSearch values to report"
    )
    p.add_argument(
        "--repeats", type=int, default=3, help="timing passes per figure; the median is reported"
    )
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--out", type=Path, default=None, help="write results as JSON here")
    p.add_argument("--plot", type=Path, default=None, help="draw recall vs QPS to this PNG")
    p.add_argument(
        "--from-json",
        type=Path,
        default=None,
        help="skip the run: read results written by --out (to re-draw --plot)",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.from_json is not None:
        report = json.loads(args.from_json.read_text())
        print_table(report["results"])
        if args.plot is not None:
            plot(report, args.plot)
        return 0
    rng = np.random.default_rng(args.seed)
    centres = random_centres(args.centres, args.dim, rng)
    t = time.perf_counter()
    base = clustered_unit_vectors(max(args.sizes), centres, args.spread, rng)
    queries = clustered_unit_vectors(args.queries, centres, args.spread, rng)
    print(f"generated {len(base)} base + {len(queries)} queries in {time.perf_counter() - t:.1f} s")
    results = [bench_size(n, base, queries, args) for n in sorted(args.sizes)]
    print_table(results)
    import faiss

    report = {
        "command": command_line(),
        "machine": describe_machine(
            faiss=faiss.__version__, faiss_compile_options=faiss.get_compile_options()
        ),
        "data": {
            "kind": "mixture of Gaussians on the unit sphere",
            "centres": args.centres,
            "spread": args.spread,
            "seed": args.seed,
        },
        "results": results,
    }
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.out}")
    if args.plot is not None:
        plot(report, args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
