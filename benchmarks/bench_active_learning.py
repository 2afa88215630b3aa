"""Benchmark pool-based active learning on Fashion-MNIST: the project's model and training recipe
(``curator.experiments.run_experiment``), random, entropy, margin, k-center, typicality and the
default combined strategy (``uncertainty_diversity``), several seeds, plus the same recipe on all
60,000 labels as the ceiling.

What it reports, per strategy: the labels and the mean/std test accuracy per round and the AUBC
(area under the accuracy-vs-labels curve over the label range); and the default strategy against
random: the AUBC gain (goal >= 0.015), the accuracy gain at 5,000 labels (goal >= 2 points) and
the fraction of the final label count the default needs to reach random's final accuracy (goal
<= 0.5). The JSON is rewritten after every run, so an interrupted benchmark keeps what it measured.

Torch runs on the CPU (``--threads``, default all cores) so that the figures can be reproduced on
any machine; ``--device cuda`` is not offered because the committed figures must come from the
CPU recipe.

Example (``make bench-al``; 165 models of 30,000 training samples each and three ceilings,
48 minutes on two otherwise idle cores)::

    python benchmarks/bench_active_learning.py --seeds 0 1 2 \\
        --strategies random uncertainty_diversity entropy margin kcenter typicality \\
        --out benchmarks/results/bench_active_learning.json \\
        --plot benchmarks/results/bench_active_learning.png
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

from machine import command_line, describe_machine

from curator.experiments import (
    DEFAULT_STRATEGIES,
    ExperimentConfig,
    models_trained,
    plot_curves,
    run_experiment,
)

GOALS = {
    "aubc_gain": 0.015,
    "accuracy_gain_at_labels": 0.02,
    "label_fraction_to_reach_random_final": 0.5,
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    defaults = ExperimentConfig()
    for f in fields(ExperimentConfig):
        value = getattr(defaults, f.name)
        flag = "--" + f.name.replace("_", "-")
        if isinstance(value, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=value)
        else:
            parser.add_argument(flag, type=type(value), default=value, help=f"default {value}")
    parser.add_argument("--strategies", nargs="+", default=list(DEFAULT_STRATEGIES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch CPU threads")
    parser.add_argument("--out", type=Path, help="write the JSON result here")
    parser.add_argument("--plot", type=Path, help="write the learning curves here (PNG)")
    return parser


def _goals(result: dict[str, Any]) -> dict[str, Any]:
    """Each goal met or not; None while random or the default has no finished run. A default
    that never reaches random's final accuracy (no labels to reach it) misses that goal."""
    compare = result.get("default_vs_random")
    met: dict[str, bool | None] = {}
    for key, goal in GOALS.items():
        value = None if compare is None else compare.get(key)
        if compare is None:
            met[key] = None
        elif key.startswith("label_fraction"):
            met[key] = value is not None and value <= goal
        else:
            met[key] = value is not None and value >= goal
    return {"goals": GOALS, "met": met}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    config = ExperimentConfig(**{f.name: getattr(args, f.name) for f in fields(ExperimentConfig)})
    machine = describe_machine(torch=torch.__version__, torch_threads=args.threads, device="cpu")

    def save(result: dict[str, Any]) -> None:
        result = {**result, **_goals(result), "machine": machine, "command": command_line()}
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(result, indent=1) + "\n")

    from tqdm import tqdm

    total = models_trained(config, len(args.strategies), len(args.seeds))
    with tqdm(total=total, unit="model", file=sys.stderr) as bar:

        def progress(line: str) -> None:
            bar.update(1)
            bar.write(line)

        result = run_experiment(
            config, args.strategies, args.seeds, progress=progress, on_result=save
        )
    save(result)
    if args.plot:
        plot_curves(result, args.plot)
    summary = {
        "strategies": {
            n: {"aubc": s["aubc"], "final": s["mean"][-1]} for n, s in result["strategies"].items()
        },
        "ceiling": result["ceiling"],
        "default_vs_random": result["default_vs_random"],
        **_goals(result),
        "seconds": result["seconds"],
    }
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
