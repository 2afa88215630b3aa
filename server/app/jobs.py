"""Fine-tuning jobs over HTTP: an admin asks for a run, operators look at the jobs.

``POST /v1/jobs/fine-tune`` applies the trigger policy as an admin request
(:func:`server.jobs.trigger.trigger`): a job for the current label snapshot is created and
dispatched to the workers (``curator-server worker``), or the snapshot's existing job is
returned. Labels also start a job by themselves every ``train_every_labels`` new labels
(:func:`maybe_train`, called after each label). See docs/jobs.md.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from server.app.deps import CurrentPrincipal, Services
from server.app.errors import ErrorResponse
from server.app.services import ServerServices
from server.auth import Role, require
from server.jobs.store import JobStore
from server.jobs.trigger import trigger

__all__ = ["JobView", "maybe_train", "router"]

log = logging.getLogger(__name__)

router = APIRouter(tags=["jobs"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "No valid bearer token."},
    403: {"model": ErrorResponse, "description": "Not an admin token."},
}


class JobView(BaseModel):
    """A fine-tuning job as operators see it."""

    model_config = ConfigDict(from_attributes=True)  # built from the store's rows

    job_id: str = Field(description="The job's id.")
    kind: str = Field(description="What it runs (fine_tune).")
    snapshot_key: str = Field(description="The label snapshot it trains on; one job per key.")
    label_count: int = Field(description="Current labels in the snapshot.")
    status: str = Field(description="queued, running, succeeded or failed.")
    attempts: int = Field(description="Times a worker claimed it.")
    params: dict[str, Any] = Field(
        description="The training recipe recorded when it was created (epochs, min_samples)."
    )
    requested_by: str | None = Field(description="The admin token id that asked, if any.")
    created_at: datetime = Field(description="When it was created (UTC).")
    started_at: datetime | None = Field(description="When the latest attempt started (UTC).")
    finished_at: datetime | None = Field(description="When it ended (UTC).")
    result: dict[str, Any] | None = Field(
        description="model_version, metrics, promoted and details; or error."
    )


class TriggerView(BaseModel):
    """What a request for a run did."""

    started: bool = Field(description="Whether a new job was created and dispatched.")
    reason: str = Field(description="Why (the trigger policy's words).")
    job: JobView | None = Field(description="The snapshot's job, new or existing; null if none.")


def maybe_train(services: ServerServices) -> None:
    """Start a job when ``train_every_labels`` labels arrived since the last one (best effort:
    a failure is logged, never fails the label that was stored)."""
    try:
        outcome = trigger(
            JobStore(services.db),
            services.job_queue,
            every_labels=services.settings.train_every_labels,
            params=services.settings.fine_tune_params,
        )
    except Exception:
        log.exception("fine-tune trigger failed after a label")
        return
    if outcome.created and outcome.job is not None:
        log.info("fine-tune job started", extra={"job_id": outcome.job.job_id})


@router.post(
    "/v1/jobs/fine-tune",
    response_model=TriggerView,
    status_code=202,
    summary="Ask for a fine-tuning run",
    description="Creates a job for the current label snapshot and dispatches it to the workers, "
    "or returns the snapshot's existing job (the same snapshot never yields two model "
    "versions). `started` is false with the reason when there is nothing to train on.",
    responses={
        **_ERRORS,
        200: {"description": "No new job: the snapshot's existing job, or nothing to train."},
    },
)
async def request_fine_tune(
    response: Response, services: Services, principal: CurrentPrincipal
) -> TriggerView:
    require(principal, Role.ADMIN)
    outcome = await run_in_threadpool(
        trigger,
        JobStore(services.db),
        services.job_queue,
        every_labels=services.settings.train_every_labels,
        requested_by=principal.token_id,
        params=services.settings.fine_tune_params,
    )
    if not outcome.created:
        response.status_code = 200
    job = None if outcome.job is None else JobView.model_validate(outcome.job)
    return TriggerView(started=outcome.created, reason=outcome.decision.reason, job=job)


@router.get(
    "/v1/jobs",
    response_model=list[JobView],
    summary="List fine-tuning jobs",
    description="Every job, newest first.",
    responses=_ERRORS,
)
async def list_jobs(services: Services, principal: CurrentPrincipal) -> list[JobView]:
    require(principal, Role.ADMIN)
    jobs = await run_in_threadpool(JobStore(services.db).list)
    return [JobView.model_validate(j) for j in jobs]


@router.get(
    "/v1/jobs/{job_id}",
    response_model=JobView,
    summary="One fine-tuning job",
    description="The job's status, attempts and result.",
    responses={**_ERRORS, 404: {"model": ErrorResponse, "description": "No such job."}},
)
async def get_job(job_id: str, services: Services, principal: CurrentPrincipal) -> JobView:
    require(principal, Role.ADMIN)
    return JobView.model_validate(await run_in_threadpool(JobStore(services.db).get, job_id))
