"""The seam between jobs and what they run: :data:`JOB_RUNNERS` maps a job kind to a function
of a :class:`JobContext` returning a :class:`JobResult`.

A runner must be idempotent per snapshot: a job re-run after a crash must not make a second
model version. The registry enforces one version per snapshot; a runner first asks
:meth:`JobContext.existing_model` and returns that version if the crashed run already registered
one, else it trains, records where its weights are (:meth:`JobContext.record_weights`) and
registers with ``snapshot_key=job.snapshot_key`` (:func:`server.registry.register_and_gate`).
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from curator.errors import InvalidInputError, MissingDependencyError
from curator.wire import ModelInfo
from server.catalog import Catalog
from server.jobs.rows import Job
from server.jobs.trigger import SnapshotLabel, snapshot_labels
from server.jobs.weights import record_weights, weights_of
from server.registry import ModelRegistry

__all__ = [
    "DEFAULT_FINE_TUNE_RUNNER",
    "JOB_RUNNERS",
    "JobContext",
    "JobResult",
    "JobRunner",
    "load_runner",
]

DEFAULT_FINE_TUNE_RUNNER = "server.jobs.fine_tune:fine_tune_job"
"""Where the default ``fine_tune`` runner is looked up (lazily, when a job runs)."""


@dataclass(frozen=True)
class JobResult:
    """What a runner made: the model version (None if none), its held-out metrics, whether the
    gate promoted it, and anything else worth keeping with the job (JSON values)."""

    model_version: str | None
    metrics: Mapping[str, float] = field(default_factory=dict)
    promoted: bool | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "model_version": self.model_version,
            "metrics": dict(self.metrics),
            "promoted": self.promoted,
            "details": dict(self.details),
        }


@dataclass
class JobContext:
    """What a runner gets: the claimed job, the catalog and the registry.

    Attributes:
        lease_lost: set when a heartbeat found the lease taken by another worker; a long runner
            may check it and stop early (its result would be discarded anyway).
    """

    job: Job
    catalog: Catalog
    registry: ModelRegistry
    lease_lost: threading.Event

    @property
    def snapshot_key(self) -> str:
        return self.job.snapshot_key

    @property
    def params(self) -> Mapping[str, Any]:
        return self.job.params

    def labels(self) -> list[SnapshotLabel]:
        """The snapshot's labels (exactly those the job was created for)."""
        return snapshot_labels(self.catalog.db.connection, self.job.label_watermark)

    def existing_model(self) -> ModelInfo | None:
        """The model version already registered for this snapshot (a crashed run's), or None."""
        row = self.catalog.db.connection.execute(
            "SELECT model_version FROM model_versions WHERE snapshot_key = ?",
            (self.job.snapshot_key,),
        ).fetchone()
        return None if row is None else self.registry.get(row[0])

    def record_weights(self, blob_key: str) -> bool:
        """Record ``blob_key`` as the weights this run trained, on the job's row, before the
        model version is registered (:func:`server.jobs.weights.record_weights`).

        Returns:
            False when this worker no longer holds the job's lease (nothing written).

        Raises:
            InvalidInputError: ``blob_key`` is not a relative blob key.
        """
        owner = self.job.lease_owner or ""
        return record_weights(self.catalog.db.connection, self.job.job_id, owner, blob_key)

    def weights_of(self, model_version: str) -> str | None:
        """The blob key of ``model_version``'s weights, or None when no job recorded them."""
        return weights_of(self.catalog.db.connection, model_version)


JobRunner = Callable[[JobContext], JobResult]


def load_runner(spec: str) -> JobRunner:
    """The function named ``"package.module:function"``, imported now.

    Raises:
        InvalidInputError: ``spec`` is not ``module:function`` or names nothing callable.
        MissingDependencyError: the module cannot be imported.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise InvalidInputError(f"a job runner must be 'module:function', got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise MissingDependencyError(
            f"job runner {spec!r}: cannot import {module_name!r} ({exc}); for fine-tuning "
            "install the train extra: pip install 'curator[train]'"
        ) from exc
    runner = getattr(module, attr, None)
    if not callable(runner):
        raise InvalidInputError(f"job runner {spec!r}: {module_name} has no function {attr!r}")
    return runner  # type: ignore[no-any-return]


def _default_fine_tune(ctx: JobContext) -> JobResult:
    return load_runner(DEFAULT_FINE_TUNE_RUNNER)(ctx)


JOB_RUNNERS: dict[str, JobRunner] = {"fine_tune": _default_fine_tune}
"""Job kind -> runner. The default ``fine_tune`` runner imports
:data:`DEFAULT_FINE_TUNE_RUNNER` when a job runs; ``job_runner`` in the settings replaces it."""
