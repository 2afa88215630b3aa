"""The demo's report: ``report.json``, PNG plots (matplotlib, Agg) and ``report.html``."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from curator._optional import require
from curator.demo.rounds import DemoReport

__all__ = ["PLOTS", "summary_rows", "write_report"]

PLOTS = ("accuracy.png", "frames.png", "bytes.png")
"""The plot files, under ``plots/`` next to the report."""

_COLORS = {"curated": "#1f77b4", "random": "#ff7f0e"}


def summary_rows(data: dict[str, Any]) -> list[tuple[str, str, str]]:
    """``(what, curated, random)`` rows of the totals, for the terminal and the page."""
    cur, rnd = data["totals"]["curated"], data["totals"]["random"]
    seed = data["seed"]["accuracy"]

    def both(key: str, fmt: str = "{:,}") -> tuple[str, str]:
        return fmt.format(cur[key]), fmt.format(rnd[key])

    return [
        ("frames seen", *both("frames_seen")),
        ("frames kept", *both("frames_kept")),
        ("frames uploaded", *both("frames_uploaded")),
        ("uploaded / seen", *both("upload_share", "{:.2%}")),
        ("duplicates dropped by the server", *both("duplicates_dropped")),
        ("repeats dropped on the camera", *both("edge_duplicates")),
        ("frames stored", *both("accepted")),
        ("labels bought", *both("labeled")),
        ("bytes uploaded", *both("bytes_uploaded")),
        ("raw stream bytes", *both("raw_bytes")),
        ("seed model test accuracy", f"{seed['curated']:.4f}", f"{seed['random']:.4f}"),
        ("final model", cur["final_model_version"], rnd["final_model_version"]),
        ("final test accuracy", *both("final_accuracy", "{:.4f}")),
    ]


def _plots(data: dict[str, Any], folder: Path) -> None:
    matplotlib = require("matplotlib", extra="notebooks")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    seed = data["seed"]
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, rounds in data["rounds"].items():
        labels = [seed["labels"][name]]
        acc = [seed["accuracy"][name]]
        for r in rounds:
            labels.append(labels[-1] + r["labeled"])
            acc.append(r["accuracy"])
        ax.plot(labels, acc, marker="o", label=f"{name}: promoted", color=_COLORS.get(name))
        tried = [r["job"].get("test_accuracy") for r in rounds]
        if all(t is not None for t in tried):  # each round's job model, promoted or not
            ax.plot(labels[1:], tried, ls="--", marker="x", alpha=0.6, color=_COLORS.get(name),
                    label=f"{name}: that round's job")  # fmt: skip
    ax.set_xlabel("labels (seed set included)")
    ax.set_ylabel("Fashion-MNIST test accuracy")
    ax.set_title("Promoted model after each round")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(folder / "accuracy.png", dpi=110)
    plt.close(fig)

    keys = ["frames_seen", "frames_kept", "frames_uploaded", "duplicates_dropped", "labeled"]
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.38
    for j, name in enumerate(data["totals"]):
        values = [data["totals"][name][k] for k in keys]
        xs = [i + (j - 0.5) * width for i in range(len(keys))]
        ax.bar(xs, values, width, label=name, color=_COLORS.get(name))
    ax.set_xticks(range(len(keys)), [k.replace("_", " ") for k in keys], rotation=15)
    ax.set_yscale("log")
    ax.set_ylabel("frames (log scale)")
    ax.set_title("Frames through the loop, all rounds")
    ax.legend()
    fig.tight_layout()
    fig.savefig(folder / "frames.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    names = list(data["totals"])
    raw = [data["totals"][n]["raw_bytes"] / 1e6 for n in names]
    sent = [data["totals"][n]["bytes_uploaded"] / 1e6 for n in names]
    ax.bar([i - 0.2 for i in range(len(names))], raw, 0.4, label="raw stream", color="#999999")
    ax.bar([i + 0.2 for i in range(len(names))], sent, 0.4, label="uploaded", color="#2ca02c")
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("MB")
    ax.set_title("Bytes uploaded against the raw stream")
    ax.legend()
    fig.tight_layout()
    fig.savefig(folder / "bytes.png", dpi=110)
    plt.close(fig)


def _html(data: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(a)}</td><td>{html.escape(b)}</td><td>{html.escape(c)}</td></tr>"
        for a, b, c in summary_rows(data)
    )
    pairs = zip(data["rounds"]["curated"], data["rounds"]["random"], strict=True)
    per_round = "".join(
        f"<tr><td>{c['round']}</td><td>{html.escape(data['offline'][i])}</td>"
        + "".join(_fleet_cells(x) for x in (c, r))
        + "</tr>"
        for i, (c, r) in enumerate(pairs)
    )
    images = "".join(f'<p><img src="plots/{p}" alt="{p}"></p>' for p in PLOTS)
    config = html.escape(json.dumps(data["config"], indent=2))
    seed = data["seed"]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>curator fleet demo</title>
<style>body{{font-family:sans-serif;max-width:960px;margin:2em auto}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}
td:first-child{{text-align:left}}</style></head><body>
<h1>curator fleet demo</h1>
<p>Two fleets saw the same camera streams. The <b>curated</b> fleet's edge selectors kept frames
by uncertainty and novelty, its server removed near-duplicates and chose what to label; the
<b>random</b> fleet kept as many frames per camera uniformly at random and labeled at random,
with the same label budget. Seed models (the first fine-tuning job on {seed["images"]}
labeled images): test accuracy {_by_fleet(seed["accuracy"])}. Run time
{data["seconds"]:.0f} s.</p>
<h2>Totals</h2><table><tr><th></th><th>curated</th><th>random</th></tr>{rows}</table>
<h2>Rounds</h2><table><tr><th>round</th><th>offline camera</th><th>curated uploaded</th>
<th>labeled</th><th>job</th><th>promoted model</th><th>accuracy</th><th>random uploaded</th>
<th>labeled</th><th>job</th><th>promoted model</th><th>accuracy</th></tr>{per_round}</table>
<p>job: the round's fine-tuning job, its model's test accuracy, and whether the gate promoted
it.</p>
<h2>Plots</h2>{images}
<h2>Configuration</h2><pre>{config}</pre>
</body></html>
"""


def _fleet_cells(r: dict[str, Any]) -> str:
    job = r["job"]
    tried = job.get("test_accuracy")
    verdict = "promoted" if job.get("promoted") else f"not promoted ({job.get('status')})"
    shown = f"{tried:.4f}, {verdict}" if tried is not None else verdict
    return (
        f"<td>{r['frames_uploaded']}</td><td>{r['labeled']}</td><td>{html.escape(shown)}</td>"
        f"<td>{html.escape(r['model_version'])}</td><td>{r['accuracy']:.4f}</td>"
    )


def _by_fleet(values: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:.4f}" for name, value in values.items())


def write_report(report: DemoReport, out: Path) -> dict[str, Any]:
    """Write ``report.json``, ``plots/*.png`` and ``report.html`` under ``out``.

    Returns:
        The report as JSON data.

    Raises:
        MissingDependencyError: matplotlib is not installed.
    """
    data = report.as_dict()
    (out / "report.json").write_text(json.dumps(data, indent=2))
    _plots(data, out / "plots")
    (out / "report.html").write_text(_html(data))
    return data
