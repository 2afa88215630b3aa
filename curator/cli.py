"""``curator``: the library's command line.

A thin translator over the library: it parses flags, calls one function, prints the outcome and
turns curator's errors into a one-line message and an exit code (1 for a known error, 2 for bad
usage).
"""

from __future__ import annotations

import argparse
import hashlib
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


def _names(text: str) -> tuple[str, ...]:
    """``--classes a,b,c`` -> ``("a", "b", "c")``: non-empty, unique, comma-separated."""
    names = tuple(n.strip() for n in text.split(","))
    if not all(names):
        raise argparse.ArgumentTypeError(f"class names must be non-empty, got {text!r}")
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"class names must be unique, got {text!r}")
    return names


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated numbers, got {text!r}") from None


def _model_init(args: argparse.Namespace) -> int:
    from curator.errors import InvalidInputError
    from curator.inference.contract import ModelMetadata
    from curator.training import build_embedder, export_onnx

    classes = args.classes or tuple(f"class_{i}" for i in range(args.num_classes))
    try:
        metadata = ModelMetadata(
            model_version=args.version,
            class_names=classes,
            embedding_dim=args.embedding_dim,
            input_size=(args.input_size, args.input_size),
            channels=args.channels,
            mean=args.mean,
            std=args.std,
        )
        module = build_embedder(
            args.arch,
            embedding_dim=args.embedding_dim,
            num_classes=len(classes),
            input_size=args.input_size,
            channels=args.channels,
            seed=args.seed,
        )
    except InvalidInputError as exc:  # bad flag values: usage errors
        print(f"curator model init: error: {exc}", file=sys.stderr)
        return 2
    try:
        data = export_onnx(module, metadata, args.out)
    except OSError as exc:
        print(
            f"curator: error: cannot write {str(args.out)!r}: {exc.strerror or exc}",
            file=sys.stderr,
        )
        return 1
    digest = hashlib.sha256(data).hexdigest()
    print(f"{args.out} version={metadata.model_version} sha256={digest} size={len(data)}")
    return 0


def _add_model_commands(commands: Any) -> None:
    from curator.training.backbones import ARCHS

    model = commands.add_parser(
        "model",
        help="build and export models that satisfy the model contract",
        description="Build models with the project's own code and export them as ONNX files "
        "that satisfy the model contract (docs/model-contract.md).",
    )
    actions = model.add_subparsers(
        dest="model_command", required=True, metavar="ACTION", help="what to do"
    )
    init = actions.add_parser(
        "init",
        help="export an untrained, seeded model",
        description="Build a randomly initialised (seeded) network and export it to ONNX with "
        "the curator.* metadata, checked against torch through onnxruntime. Prints one line: "
        "the path, version, sha256 and size in bytes. Needs the train extra.",
    )
    init.add_argument(
        "--arch", choices=ARCHS, default=ARCHS[0], help=f"architecture (default {ARCHS[0]})"
    )
    names = init.add_mutually_exclusive_group(required=True)
    names.add_argument("--classes", type=_names, help="class names, comma-separated")
    names.add_argument(
        "--num-classes", type=_positive, help="number of classes, named class_0, class_1, ..."
    )
    init.add_argument(
        "--embedding-dim", type=_positive, default=128, help="embedding width (default 128)"
    )
    init.add_argument(
        "--input-size", type=_positive, default=224, help="square input side in pixels (224)"
    )
    init.add_argument(
        "--channels", choices=("rgb", "gray"), default="rgb", help="input channels (rgb)"
    )
    init.add_argument(
        "--mean", type=_floats, default=(), help="per-channel mean in [0, 1] units (zeros)"
    )
    init.add_argument(
        "--std", type=_floats, default=(), help="per-channel standard deviation (ones)"
    )
    init.add_argument("--seed", type=int, default=0, help="seed of the initial weights (0)")
    init.add_argument("--version", required=True, help="model version written to the metadata")
    init.add_argument("--out", type=Path, required=True, help="the .onnx file to write")
    init.set_defaults(run=_model_init)


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
    _add_model_commands(commands)
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
