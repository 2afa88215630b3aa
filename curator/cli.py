"""``curator``: the library's command line.

A thin translator over the library: it parses flags, calls one function, prints the outcome and
turns curator's errors into a one-line message and an exit code (1 for a known error, 2 for bad
usage).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from curator import __version__
from curator.errors import CuratorError

__all__ = ["main"]


def _progress_bars() -> Callable[[str, int], Callable[[int], None]]:
    """Progress bars on stderr through tqdm, or one line per stage when it is missing."""
    try:
        from tqdm import tqdm
    except ImportError:

        def plain(description: str, total: int) -> Callable[[int], None]:
            print(f"{description} ({total})...", file=sys.stderr)
            return lambda n: None

        return plain

    bars: list[tqdm[Any]] = []

    def bar(description: str, total: int) -> Callable[[int], None]:
        for old in bars:
            old.close()
        bars.append(tqdm(total=total, desc=description, unit="frame", leave=True))
        update: Callable[[int], None] = bars[-1].update
        return update

    return bar


def _demo(args: argparse.Namespace) -> int:
    from curator.demo import DemoConfig, run_demo

    config = DemoConfig(
        seed=args.seed,
        seed_labels=args.seed_labels,
        objects=args.objects,
        hold=args.hold,
        keep_ratio=args.keep_ratio,
        label_budget=args.label_budget,
        dedup_threshold=args.dedup_threshold,
        out_dir=args.out,
    )
    print(
        "curator demo: the library flow on Fashion-MNIST in one process (seed model -> ONNX ->\n"
        "streaming selection -> FAISS near-duplicate removal -> pool selection -> retrain).\n"
        "The fleet demo with a real server and edge processes is not built yet.",
        file=sys.stderr,
    )
    report = run_demo(config, _progress_bars())
    rows = [
        ("frames seen", report.curated.frames_seen, report.random.frames_seen),
        ("frames kept", report.curated.frames_kept, report.random.frames_kept),
        ("duplicates dropped", report.curated.duplicates_dropped, report.random.duplicates_dropped),
        ("labeled (+ seed)", report.curated.labeled, report.random.labeled),
        ("test accuracy", f"{report.curated.accuracy:.4f}", f"{report.random.accuracy:.4f}"),
    ]
    print(f"\n{'':22}{'curated':>12}{'random':>12}")
    for name, cur, rnd in rows:
        print(f"{name:22}{cur!s:>12}{rnd!s:>12}")
    print(f"seed model accuracy {report.seed_accuracy:.4f}; {report.seconds:.0f} s")
    print(f"report: {Path(args.out) / 'report.json'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``curator`` argument parser (every command has help text)."""
    parser = argparse.ArgumentParser(
        prog="curator", description="Active-learning data curation for fleets of edge cameras."
    )
    parser.add_argument("--version", action="version", version=f"curator {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="run the library flow end to end on Fashion-MNIST",
        description="Train a seed model, stream simulated camera frames through it, keep the "
        "informative ones, remove near-duplicates, label with the default pool strategy and at "
        "random, retrain, and compare test accuracy.",
    )
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.add_argument("--seed-labels", type=int, default=200, help="labeled seed images")
    demo.add_argument("--objects", type=int, default=1500, help="objects each camera sees")
    demo.add_argument("--hold", type=int, default=8, help="frames each object is held for")
    demo.add_argument("--keep-ratio", type=float, default=0.05, help="fraction of frames kept")
    demo.add_argument("--label-budget", type=int, default=300, help="labels bought per pool")
    demo.add_argument(
        "--dedup-threshold", type=float, default=0.97, help="cosine similarity of duplicates"
    )
    demo.add_argument("--out", type=Path, default=Path("demo-output"), help="output folder")
    demo.set_defaults(run=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except CuratorError as exc:
        print(f"curator: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("curator: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
