"""What the demo records per fleet and round, and the totals the report shows."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["DemoReport", "FleetRound", "fleet_totals"]


@dataclass
class FleetRound:
    """One fleet in one round.

    Attributes:
        round: the round, from 1.
        frames_seen: frames the fleet's cameras captured.
        frames_kept: frames kept (by the selectors, or drawn at random).
        frames_uploaded: frames the server answered for (accepted + duplicates + rejected).
        edge_duplicates: frames a selector dropped as repeats of a frame it had kept.
        duplicates_dropped: uploaded frames the server dropped as near-duplicates.
        accepted: uploaded frames the server stored.
        labeled: labels given this round.
        bytes_uploaded: upload request bytes (images, embeddings, headers).
        raw_bytes: the captured frames' raw pixels (28 * 28 bytes each).
        model_version: the model promoted after the round's fine-tuning job.
        accuracy: that model's accuracy on the Fashion-MNIST test set.
        job: the job's status, model version, promotion and held-out metrics, and
            ``test_accuracy``: its model's accuracy on the test set, promoted or not.
        per_class_labels: labels given this round, by class name.
        devices: per camera: seen, kept, uploaded, duplicates.
    """

    round: int
    frames_seen: int = 0
    frames_kept: int = 0
    frames_uploaded: int = 0
    edge_duplicates: int = 0
    duplicates_dropped: int = 0
    accepted: int = 0
    labeled: int = 0
    bytes_uploaded: int = 0
    raw_bytes: int = 0
    model_version: str = ""
    accuracy: float = 0.0
    job: dict[str, Any] = field(default_factory=dict)
    per_class_labels: dict[str, int] = field(default_factory=dict)
    devices: dict[str, dict[str, int]] = field(default_factory=dict)


_SUMMED = (
    "frames_seen",
    "frames_kept",
    "frames_uploaded",
    "edge_duplicates",
    "duplicates_dropped",
    "accepted",
    "labeled",
    "bytes_uploaded",
    "raw_bytes",
)


def fleet_totals(rounds: list[FleetRound]) -> dict[str, Any]:
    """Sums over the rounds, the final accuracy, and the upload share of frames seen."""
    totals: dict[str, Any] = {name: sum(getattr(r, name) for r in rounds) for name in _SUMMED}
    totals["final_accuracy"] = rounds[-1].accuracy if rounds else 0.0
    totals["final_model_version"] = rounds[-1].model_version if rounds else ""
    seen = max(totals["frames_seen"], 1)
    totals["upload_share"] = totals["frames_uploaded"] / seen
    totals["bytes_share"] = totals["bytes_uploaded"] / max(totals["raw_bytes"], 1)
    return totals


@dataclass
class DemoReport:
    """Everything ``report.json`` holds.

    Attributes:
        config: the :class:`~curator.demo.config.DemoConfig` as JSON values.
        seed: the seed model: ``model_version``, ``accuracy``, ``labels`` (seed frames each
            server accepted and so labeled), ``images``.
        rounds: per fleet (``curated``, ``random``), its :class:`FleetRound` list.
        totals: per fleet, :func:`fleet_totals`.
        offline: per round, the camera that was offline for part of it.
        seconds: wall time of the whole run.
    """

    config: dict[str, Any]
    seed: dict[str, Any]
    rounds: dict[str, list[FleetRound]]
    offline: list[str]
    seconds: float = 0.0
    totals: dict[str, dict[str, Any]] = field(default_factory=dict)

    def finish(self, seconds: float) -> None:
        """Fill in the totals and the wall time."""
        self.totals = {name: fleet_totals(rounds) for name, rounds in self.rounds.items()}
        self.seconds = seconds

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)
