"""``curator``: the library's command line.

A thin translator over the library: it parses flags, calls one function, prints the outcome and
turns curator's errors into a one-line message and an exit code (1 for a known error, 2 for bad
usage).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from curator import __version__
from curator.errors import CuratorError

__all__ = ["main"]


def _status_line(started: float) -> Callable[[str], None]:
    """Print each step of the demo on stderr with the minutes and seconds since the start."""

    def status(line: str) -> None:
        elapsed = int(time.monotonic() - started)
        print(f"[{elapsed // 60:02d}:{elapsed % 60:02d}] {line}", file=sys.stderr, flush=True)

    return status


def _demo(args: argparse.Namespace) -> int:
    from curator.demo import DemoConfig, run_demo
    from curator.demo.report import summary_rows

    values = {f.name: getattr(args, f.name) for f in fields(DemoConfig)}
    config = DemoConfig(**values)
    if args.quick:
        config = config.quick()
    print(
        f"curator demo: {config.devices} cameras per fleet, {config.rounds} rounds, "
        f"{config.label_budget} labels per round; writing {config.out_dir}/",
        file=sys.stderr,
    )
    report = run_demo(config, _status_line(time.monotonic()))
    data = report.as_dict()
    print(f"\n{'':34}{'curated':>18}{'random':>18}")
    for name, cur, rnd in summary_rows(data):
        print(f"{name:34}{cur:>18}{rnd:>18}")
    print(f"run time {report.seconds:.0f} s")
    print(f"report: {Path(config.out_dir) / 'report.html'}")
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


_DEMO_FLAGS: tuple[tuple[str, type, str], ...] = (
    ("seed", int, "seeds every random choice"),
    ("devices", int, "simulated cameras per fleet (edge-selector processes)"),
    ("rounds", int, "rounds of stream, label, fine-tune, roll out"),
    ("objects", int, "objects each camera sees per round"),
    ("hold", int, "frames each object is held in view (near-duplicates)"),
    ("common_classes", int, "classes that dominate a camera's round, all but one fleet-wide"),
    ("common_share", float, "share of a camera's objects from its common classes"),
    ("first_common_class", int, "Fashion-MNIST label of the first common class in round 1"),
    ("keep_ratio", float, "fraction of frames the selectors keep"),
    ("label_budget", int, "labels bought per fleet per round"),
    ("seed_labels", int, "labeled images of the seed model"),
    ("offline_share", float, "share of its round the offline camera has no link"),
    ("fps", float, "frames per second each camera replays at"),
    ("dedup_threshold", float, "the servers' near-duplicate cosine similarity"),
    ("train_samples", int, "training samples per fine-tuning job, at least"),
    ("job_timeout_s", float, "longest wait for a fine-tuning job, seconds"),
)


def _add_demo_command(commands: Any) -> None:
    from curator.demo import QUICK, DemoConfig

    demo = commands.add_parser(
        "demo",
        help="run the fleet demo: real server, worker and edge selectors against random",
        description="Start a curator server and worker per fleet, train and roll out a seed "
        "model, stream simulated Fashion-MNIST cameras through edge-selector processes, label "
        "through the labeling API, fine-tune and roll out for several rounds, and compare with "
        "a fleet that keeps and labels frames at random under the same budgets. Writes "
        "report.json, report.html and plots to --out (docs/demo.md).",
    )
    defaults = DemoConfig()
    for name, kind, text in _DEMO_FLAGS:
        default = getattr(defaults, name)
        demo.add_argument(
            f"--{name.replace('_', '-')}", type=kind, default=default,
            help=f"{text} (default {default})",
        )  # fmt: skip
    demo.add_argument(
        "--out", dest="out_dir", type=Path, default=defaults.out_dir,
        help=f"output folder; a previous demo's files in it are replaced ({defaults.out_dir})",
    )  # fmt: skip
    quick = ", ".join(f"{k.replace('_', '-')} {v}" for k, v in QUICK.items())
    demo.add_argument(
        "--quick", action="store_true", help=f"a shortened run over other sizes: {quick}"
    )
    demo.set_defaults(run=_demo)


def build_parser() -> argparse.ArgumentParser:
    """The ``curator`` argument parser (every command has help text)."""
    parser = argparse.ArgumentParser(
        prog="curator", description="Active-learning data curation for fleets of edge cameras."
    )
    parser.add_argument("--version", action="version", version=f"curator {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_demo_command(commands)
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
