"""What the fleet demo runs: :class:`DemoConfig`, one field per ``curator demo`` flag."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path

from curator.errors import InvalidInputError

__all__ = ["QUICK", "DemoConfig"]


@dataclass(frozen=True)
class DemoConfig:
    """The demo's sizes and knobs; the defaults are what ``make demo`` runs.

    Attributes:
        out_dir: where the servers' data, the camera streams, the logs and the report go
            (emptied of a previous demo's files first).
        seed: seeds every random choice (streams, seed set, sampling of the random fleet).
        devices: simulated cameras per fleet, one ``edge-selector run`` process each.
        rounds: rounds of stream -> select -> label -> fine-tune -> roll out.
        objects: objects each camera sees per round; each is held in view for ``hold`` frames.
        hold: frames per object (near-duplicates: small shifts, light changes, sensor noise).
        common_classes: classes that make up ``common_share`` of what a camera sees in a round:
            all but one are the same on every camera, the last is the camera's own; they move
            on by one class every round (drift).
        common_share: share of a round's objects drawn from the camera's common classes.
        first_common_class: the first of the fleet's common classes in the first round (a
            Fashion-MNIST label, 0-9); the others follow it in label order.
        keep_ratio: the fraction of frames each selector keeps (``--keep-ratio``); the random
            fleet keeps as many frames per camera and round, uniformly at random.
        label_budget: labels bought per fleet per round.
        seed_labels: labeled Fashion-MNIST training images imported into each server; the
            seed model is the first fine-tuning job on them.
        offline_share: share of its frames the camera that is offline in a round captures
            before its link comes back (one camera per round, in turn).
        fps: the rate each camera replays its frames at (frames per second).
        dedup_threshold: the servers' near-duplicate cosine similarity (``--dedup-threshold``).
        train_samples: training samples each fine-tuning job draws at least (the servers'
            ``train_min_samples``): the small labeled sets get many passes.
        job_timeout_s: the longest a fine-tuning job may take.
    """

    out_dir: Path = Path("demo-output")
    seed: int = 0
    devices: int = 4
    rounds: int = 4
    objects: int = 150
    hold: int = 8
    common_classes: int = 2
    common_share: float = 0.95
    first_common_class: int = 7
    keep_ratio: float = 0.04
    label_budget: int = 100
    seed_labels: int = 500
    offline_share: float = 0.5
    fps: float = 400.0
    dedup_threshold: float = 0.99
    train_samples: int = 20_000
    job_timeout_s: float = 600.0

    def __post_init__(self) -> None:
        for name in ("devices", "rounds", "objects", "hold", "label_budget", "train_samples"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidInputError(f"{name} must be a positive integer, got {value!r}")
        if not 1 <= self.common_classes <= 9:
            raise InvalidInputError(f"common_classes must lie in [1, 9], got {self.common_classes}")
        if not 0 <= self.first_common_class <= 9:
            raise InvalidInputError(
                f"first_common_class must lie in [0, 9], got {self.first_common_class}"
            )
        if self.seed_labels < 20:
            raise InvalidInputError(f"seed_labels must be at least 20, got {self.seed_labels}")
        for name, low, high in (
            ("common_share", 0.0, 1.0),
            ("keep_ratio", 0.0, 1.0),
            ("offline_share", 0.0, 1.0),
            ("dedup_threshold", -1.0, 1.0),
        ):
            value = getattr(self, name)
            if not low <= value <= high:
                raise InvalidInputError(f"{name} must lie in [{low}, {high}], got {value!r}")
        if self.keep_ratio == 0:
            raise InvalidInputError("keep_ratio must be above 0, got 0")
        for name in ("fps", "job_timeout_s"):
            if not getattr(self, name) > 0:
                raise InvalidInputError(f"{name} must be above 0, got {getattr(self, name)!r}")
        frames = self.devices * self.rounds * self.objects
        if self.seed_labels + frames > 60_000:
            raise InvalidInputError(
                "seed_labels + devices * rounds * objects must fit in Fashion-MNIST's 60,000 "
                f"training images, got {self.seed_labels} + {frames}"
            )

    @property
    def frames_per_round(self) -> int:
        """Frames one camera captures in a round."""
        return self.objects * self.hold

    def as_dict(self) -> dict[str, object]:
        """The fields as JSON values (the path as a string)."""
        return {
            f.name: str(getattr(self, f.name)) if f.name == "out_dir" else getattr(self, f.name)
            for f in fields(self)
        }

    def quick(self) -> DemoConfig:
        """A shortened run with the sizes of :data:`QUICK` (the end-to-end test's)."""
        return replace(self, **QUICK)  # type: ignore[arg-type]


QUICK: dict[str, int] = {
    "devices": 2,
    "rounds": 2,
    "objects": 100,
    "hold": 6,
    "label_budget": 15,
    "seed_labels": 300,
    "train_samples": 5_000,
}
"""The sizes ``curator demo --quick`` runs: two cameras, two rounds, a minute or two."""
