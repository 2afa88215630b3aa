"""The fleet demo's rounds: :func:`run_demo`.

1. Start two fleets, each a real ``curator-server serve`` and ``worker`` on a fresh data folder:
   *curated* (edge selectors choose what to upload, the server's pool strategy what to label)
   and *random* (as many of the same frames kept, and labeled, uniformly at random).
2. Import the labeled seed set into both and let each worker train the seed model from it
   (:mod:`curator.demo.steps` says why the seed model is a job's); then restart the servers
   with near-duplicate removal on.
3. Each round: film new camera rounds (class mix per camera, drift, one camera offline for part
   of the round); run the curated cameras' ``edge-selector`` processes; upload the random
   fleet's frames; spend the label budget on each; ask each server for a fine-tuning run (the
   worker trains, gates and promotes); measure each promoted model on the Fashion-MNIST test
   set. Cameras pick the promoted model up when the next round starts.
4. Write ``report.json``, ``report.html`` and the plots.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from curator.data.fashion_mnist import load_fashion_mnist
from curator.demo.cameras import CameraPart, run_cameras
from curator.demo.config import DemoConfig
from curator.demo.fleet import FleetServer, ProcessGroup, start_fleet
from curator.demo.labeling import Oracle, label_at_random, label_leased_tasks
from curator.demo.report import write_report
from curator.demo.rounds import DemoReport, FleetRound
from curator.demo.steps import (
    FLEETS,
    SEED_DEVICE,
    accuracy,
    camera_parts,
    clear_output,
    fine_tune_all,
    import_seed_set,
    initial_model,
    promoted_model,
)
from curator.demo.streams import CameraRound, StreamPool, make_round
from curator.demo.uploads import upload_frames
from curator.inference import OnnxModel

__all__ = ["Status", "run_demo"]

Status = Callable[[str], None]
"""Called with one line for each step the demo takes (the CLI prints it with the time)."""


class _Loop:
    """The state that lives across rounds: the fleets, the stand-in labelers' knowledge, the
    random fleet's pool and device sequence numbers, each fleet's current model."""

    def __init__(
        self,
        group: ProcessGroup,
        config: DemoConfig,
        fleets: dict[str, FleetServer],
        models: dict[str, OnnxModel],
        camera_model: Path,
        device_ids: list[str],
        out: Path,
        rng: np.random.Generator,
        status: Status,
    ) -> None:
        self._group, self.config, self.fleets = group, config, fleets
        self.device_ids, self.out, self.rng, self.status = device_ids, out, rng, status
        self.models = models
        self.camera_model = camera_model
        self.oracle = Oracle()
        self.random_pool: dict[str, int] = {}
        self.random_seq = dict.fromkeys(device_ids, 1)

    def round(
        self, r: int, cams: list[CameraRound], report: DemoReport
    ) -> tuple[FleetRound, FleetRound]:
        """Stream, upload, label and fine-tune one round on both fleets."""
        config = self.config
        for cam in cams:
            self.oracle.add(cam.frames, cam.labels)
        offline = r % config.devices
        report.offline.append(self.device_ids[offline])
        folder = self.out / "streams" / f"round-{r + 1}"
        parts = camera_parts(config.offline_share, cams, self.device_ids, folder, offline)
        self.status(
            f"round {r + 1}/{config.rounds}: {config.devices} cameras streaming "
            f"({self.device_ids[offline]} offline for part of it)"
        )
        cur, rnd = FleetRound(round=r + 1), FleetRound(round=r + 1)
        kept = self._curated(cams, parts, cur)
        self._random(cams, kept, rnd)
        self.status(f"round {r + 1}: labeling {config.label_budget} frames per fleet")
        with self.fleets["curated"].client("labeler") as labeler:
            done = label_leased_tasks(labeler, self.oracle, config.label_budget)
        cur.labeled, cur.per_class_labels = done.labeled, done.per_class
        with self.fleets["random"].client("labeler") as labeler:
            done = label_at_random(labeler, self.random_pool, config.label_budget, self.rng)
        rnd.labeled, rnd.per_class_labels = done.labeled, done.per_class
        self.status(f"round {r + 1}: fine-tuning, gating and rolling out on both servers")
        jobs = fine_tune_all(self.fleets, config.job_timeout_s)
        cur.job, rnd.job = jobs["curated"], jobs["random"]
        return cur, rnd

    def _curated(
        self, cams: list[CameraRound], parts: list[list[CameraPart]], record: FleetRound
    ) -> dict[str, int]:
        """Run the selectors; record what they did; returns frames kept per device."""
        fleet = self.fleets["curated"]
        runs = run_cameras(
            self._group, self.config, fleet, parts, self.camera_model, self.out / "curated"
        )
        with fleet.client() as admin:  # each run ends with a heartbeat of its counters
            counters = {d["device_id"]: d["counters"] for d in admin.devices()}
        for cam, device in zip(cams, self.device_ids, strict=True):
            run = runs[device]
            sent = int(counters.get(device, {}).get("sync.bytes_sent", 0))
            record.devices[device] = {
                "seen": run.seen,
                "kept": run.kept,
                "uploaded": run.uploaded,
                "duplicates": run.server_duplicates,
                "bytes": sent,
            }
            record.frames_seen += run.seen
            record.frames_kept += run.kept
            record.frames_uploaded += run.uploaded
            record.duplicates_dropped += run.server_duplicates
            record.accepted += run.uploaded - run.server_duplicates
            record.edge_duplicates += (run.dropped or {}).get("near_duplicate", 0)
            record.bytes_uploaded += sent
            record.raw_bytes += cam.frames.size
        return {device: runs[device].kept for device in self.device_ids}

    def _random(self, cams: list[CameraRound], kept: dict[str, int], record: FleetRound) -> None:
        """Keep as many of the same frames per camera, uniformly at random, and upload them."""
        for cam, device in zip(cams, self.device_ids, strict=True):
            count = min(kept[device], len(cam.frames))
            pick = np.sort(self.rng.choice(len(cam.frames), size=count, replace=False))
            with self.fleets["random"].client(device_id=device) as api:
                up = upload_frames(
                    api, device, cam.frames[pick], self.models["random"],
                    first_seq=self.random_seq[device], keep_reason="random",
                )  # fmt: skip
            self.random_seq[device] = up.next_seq
            for frame_id, i in up.accepted.items():
                self.random_pool[frame_id] = int(cam.labels[pick[i]])
            record.devices[device] = {
                "seen": len(cam.frames),
                "kept": count,
                "uploaded": up.uploaded,
                "duplicates": up.duplicates,
                "bytes": up.bytes_sent,
            }
            record.frames_seen += len(cam.frames)
            record.frames_kept += count
            record.frames_uploaded += up.uploaded
            record.duplicates_dropped += up.duplicates
            record.accepted += len(up.accepted)
            record.bytes_uploaded += up.bytes_sent
            record.raw_bytes += cam.frames.size


def run_demo(config: DemoConfig, status: Status = lambda line: None) -> DemoReport:
    """Run the fleet demo (module docstring) and write its report under ``config.out_dir``.

    Raises:
        DatasetError: Fashion-MNIST is not available.
        MissingDependencyError: an extra is missing (edge, server, train; matplotlib for plots).
        CuratorError: a process failed to start or exited with an error.
    """
    started = time.monotonic()
    out = Path(config.out_dir)
    clear_output(out)
    rng = np.random.default_rng(config.seed)
    train_x, train_y = load_fashion_mnist("train")
    test_x, test_y = load_fashion_mnist("test")
    order = rng.permutation(len(train_x))
    seed_idx, rest = order[: config.seed_labels], order[config.seed_labels :]
    pool = StreamPool(train_y[rest], rest, rng)
    device_ids = [f"cam-{i + 1}" for i in range(config.devices)]
    init = initial_model(config.seed)

    with ProcessGroup() as group:
        fleets: dict[str, FleetServer] = {}
        for name in FLEETS:
            status(f"starting the {name} fleet's server and worker")
            # the labeled seed set is imported whole: only byte-identical frames are dropped
            fleets[name] = start_fleet(
                group,
                name,
                out / name,
                [*device_ids, SEED_DEVICE],
                dedup_threshold=1.0,
                train_samples=config.train_samples,
            )
        status(f"importing {config.seed_labels} labeled seed images; training the seed model")
        seeded = {
            name: import_seed_set(fleet, init, train_x[seed_idx], train_y[seed_idx])
            for name, fleet in fleets.items()
        }
        seed_jobs = fine_tune_all(fleets, config.job_timeout_s)
        seed: dict[str, Any] = {"images": config.seed_labels, "labels": seeded, "jobs": seed_jobs}
        models: dict[str, OnnxModel] = {}
        for name, fleet in fleets.items():
            model = models[name] = promoted_model(fleet, out / "models")
            seed.setdefault("model_version", {})[name] = model.model_version
            seed.setdefault("accuracy", {})[name] = accuracy(model, test_x, test_y)
            fleet.serve(config.dedup_threshold)  # near-duplicate removal on from here
        status(f"seed models {seed['model_version']}: test accuracy {seed['accuracy']}")
        report = DemoReport(
            config=config.as_dict(),
            seed=seed,
            rounds={name: [] for name in FLEETS},
            offline=[],
        )
        camera_model = out / "models" / f"curated-{models['curated'].model_version}.onnx"
        loop = _Loop(group, config, fleets, models, camera_model, device_ids, out, rng, status)
        for r in range(config.rounds):
            cams = [
                make_round(config, train_x, train_y, pool, d, r, rng) for d in range(config.devices)
            ]
            cur, rnd = loop.round(r, cams, report)
            for name, record in (("curated", cur), ("random", rnd)):
                model = promoted_model(fleets[name], out / "models")
                record.model_version = model.model_version
                record.accuracy = accuracy(model, test_x, test_y)
                loop.models[name] = model
                candidate = record.job.get("model_version")
                if candidate and candidate != model.model_version:  # the gate kept the old one
                    trained = promoted_model(fleets[name], out / "models", candidate)
                    record.job["test_accuracy"] = accuracy(trained, test_x, test_y)
                elif candidate:
                    record.job["test_accuracy"] = record.accuracy
                report.rounds[name].append(record)
            status(
                f"round {r + 1}: test accuracy curated {cur.accuracy:.3f} "
                f"({cur.model_version}), random {rnd.accuracy:.3f} ({rnd.model_version})"
            )
    report.finish(time.monotonic() - started)
    write_report(report, out)
    return report
