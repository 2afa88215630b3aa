"""The labeling API: label tasks under leases, labels with corrections, exports, statistics,
and the frame images labelers look at. ``labeler`` or ``admin`` tokens only.

Storage, selection and the rules are :class:`server.labeling.LabelStore` (docs/labeling.md).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from server.app.deps import LabelerPrincipal, Services
from server.app.errors import ErrorResponse
from server.app.jobs import maybe_train
from server.auth import Role
from server.catalog.answers import iso
from server.errors import NotFound
from server.labeling import (
    MAX_LEASE_COUNT,
    MAX_LEASE_S,
    LabelRow,
    LabelStore,
    LabelTask,
    UnknownClassName,
    exported_labels,
    label_stats,
    to_coco,
    to_jsonl,
    to_labelstudio,
)

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["labeling"])

_IMAGE_TYPES = {"jpeg": "image/jpeg", "png": "image/png"}


def _store(services: Services) -> LabelStore:
    return LabelStore(
        services.catalog,
        services.outbox,
        skip_cooldown_s=services.settings.label_skip_cooldown_s,
    )


LabelStoreDep = Annotated[LabelStore, Depends(_store)]


class LeaseRequest(BaseModel):
    """How many tasks to lease, and for how long."""

    count: int = Field(default=10, ge=1, le=MAX_LEASE_COUNT, description="How many tasks, 1-100.")
    lease_s: float = Field(
        default=300.0, gt=0, le=MAX_LEASE_S, description="Seconds until the leases expire."
    )


class RenewRequest(BaseModel):
    """How long the renewed lease lasts from now."""

    lease_s: float = Field(default=300.0, gt=0, le=MAX_LEASE_S, description="Seconds from now.")


class LeaseOut(BaseModel):
    """A lease on one frame."""

    model_config = ConfigDict(from_attributes=True)  # built from the store's rows

    lease_id: str = Field(description="The lease (and task) id.")
    frame_id: str = Field(description="The leased frame.")
    holder: str = Field(description="The token id holding it.")
    leased_at: datetime = Field(description="When it was leased (UTC).")
    expires_at: datetime = Field(description="When it expires unless renewed (UTC).")
    released_at: datetime | None = Field(description="When it ended, or null while open.")
    release_reason: str | None = Field(description="`released`, `labeled`, `expired` or null.")


class LabelTaskOut(BaseModel):
    """A frame to label, leased to the caller."""

    lease_id: str = Field(description="The task's lease id (renew, release, label with it).")
    frame_id: str = Field(description="The frame (sha256 of its image bytes).")
    image_url: str = Field(description="Path of the image: `/v1/frames/{frame_id}/image`.")
    model_version: str | None = Field(description="The model that scored the frame.")
    class_names: list[str] = Field(description="That model's classes, in index order.")
    predicted_class: str | None = Field(description="The model's guess, or null.")
    predicted_index: int | None = Field(description="Index of the guess, or null.")
    confidence: float | None = Field(description="Probability of the guess, or null.")
    strategy: str = Field(description="The pool strategy that chose the frame.")
    leased_at: datetime = Field(description="When the lease began (UTC).")
    expires_at: datetime = Field(description="When the lease expires unless renewed (UTC).")

    @classmethod
    def from_task(cls, task: LabelTask) -> LabelTaskOut:
        return cls(
            lease_id=task.lease.lease_id,
            frame_id=task.frame_id,
            image_url=task.image_path,
            model_version=task.model_version,
            class_names=list(task.class_names),
            predicted_class=task.predicted_class,
            predicted_index=task.predicted_index,
            confidence=task.confidence,
            strategy=task.lease.strategy,
            leased_at=task.lease.leased_at,
            expires_at=task.lease.expires_at,
        )


class LeaseBatch(BaseModel):
    """The tasks leased by one call; empty when nothing is left to label."""

    tasks: list[LabelTaskOut]


class LabelIn(BaseModel):
    """A label for a frame."""

    frame_id: str = Field(description="An accepted frame.")
    class_name: str = Field(min_length=1, description="One of the frame model's class names.")
    lease_id: str | None = Field(
        default=None, description="The caller's lease on the frame, if any."
    )


class LabelOut(BaseModel):
    """A stored label; `supersedes` names the label it corrects."""

    label_id: str
    frame_id: str
    class_name: str
    model_version: str | None
    labeler: str = Field(description="The token id that labeled.")
    labeled_at: datetime
    supersedes: str | None = Field(description="The label this one corrects, or null.")
    lease_id: str | None

    @classmethod
    def from_row(cls, row: LabelRow) -> LabelOut:
        return cls(
            label_id=row.label_id,
            frame_id=row.frame_id,
            class_name=row.class_name,
            model_version=row.model_version,
            labeler=row.labeler,
            labeled_at=row.created_at,
            supersedes=row.supersedes,
            lease_id=row.lease_id,
        )


def _errors(*codes: int) -> dict[int | str, dict[str, object]]:
    text = {
        400: "The body is not JSON.",
        401: "No valid bearer token.",
        403: "Not a labeler or admin token (or not the lease's holder).",
        404: "No such lease or frame.",
        409: "The lease is no longer open (expired, released or labeled).",
        422: "An invalid body or parameter.",
    }
    return {c: {"model": ErrorResponse, "description": text[c]} for c in codes}


@router.post(
    "/label-tasks/lease",
    response_model=LeaseBatch,
    summary="Lease the next frames to label",
    description=(
        "Up to `count` accepted frames that are unlabeled and not leased, chosen by the pool "
        "strategy (uncertainty x diversity by default; k-center diversity where the model gave "
        "no probabilities), each leased to the caller for `lease_s` seconds. No frame under an "
        "open lease is handed to anyone else. An empty list when nothing is left."
    ),
    responses=_errors(400, 401, 403, 422),
)
def lease_tasks(
    principal: LabelerPrincipal, store: LabelStoreDep, body: LeaseRequest | None = None
) -> LeaseBatch:
    body = body or LeaseRequest()
    tasks = store.lease(principal.token_id, body.count, body.lease_s)
    return LeaseBatch(tasks=[LabelTaskOut.from_task(t) for t in tasks])


@router.post(
    "/label-tasks/{lease_id}/renew",
    response_model=LeaseOut,
    summary="Extend a lease",
    description="Only the holder or an admin, while the lease is open: expires `lease_s` from now.",
    responses=_errors(400, 401, 403, 404, 409, 422),
)
def renew_task(
    lease_id: str,
    principal: LabelerPrincipal,
    store: LabelStoreDep,
    body: RenewRequest | None = None,
) -> LeaseOut:
    body = body or RenewRequest()
    admin = principal.role is Role.ADMIN
    lease = store.renew(lease_id, principal.token_id, body.lease_s, admin=admin)
    return LeaseOut.model_validate(lease)


@router.post(
    "/label-tasks/{lease_id}/release",
    response_model=LeaseOut,
    summary="Give a leased frame back",
    description=(
        "Only the holder or an admin, while the lease is open (e.g. the labeler skips). Other "
        "labelers may lease the frame at once; the holder gets it again only after the skip "
        "cool-down (setting `label_skip_cooldown_s`, 15 minutes by default)."
    ),
    responses=_errors(401, 403, 404, 409),
)
def release_task(lease_id: str, principal: LabelerPrincipal, store: LabelStoreDep) -> LeaseOut:
    admin = principal.role is Role.ADMIN
    return LeaseOut.model_validate(store.release(lease_id, principal.token_id, admin=admin))


@router.post(
    "/labels",
    response_model=LabelOut,
    status_code=201,
    summary="Label a frame",
    description=(
        "`class_name` must be a class of the model version that scored the frame (422 lists the "
        "valid names). A frame that has a label gets a correction: a new label whose "
        "`supersedes` is the previous one; nothing is overwritten. The frame's open lease ends. "
        "Each label is logged to the warehouse table `labels`; every `train_every_labels` new "
        "labels start a fine-tuning job (docs/jobs.md)."
    ),
    responses=_errors(400, 401, 403, 404, 422),
)
def post_label(
    body: LabelIn,
    principal: LabelerPrincipal,
    store: LabelStoreDep,
    services: Services,
) -> LabelOut:
    admin = principal.role is Role.ADMIN
    try:
        row = store.label(
            body.frame_id, body.class_name, principal.token_id, lease_id=body.lease_id, admin=admin
        )
    except UnknownClassName as exc:
        raise RequestValidationError(
            [{"loc": ("body", "class_name"), "msg": str(exc), "type": "value_error"}]
        ) from None
    maybe_train(services)  # every train_every_labels labels start a fine-tuning job
    return LabelOut.from_row(row)


ExportFormat = Literal["jsonl", "coco", "labelstudio"]


@router.get(
    "/labels/export",
    summary="Export the current labels",
    description=(
        "The current label of each labeled frame. `jsonl`: one object per line (frame_id, "
        "class_name, labeler, labeled_at, label_id, model_version, image). `coco`: a COCO "
        "dataset, each label an annotation with a full-image `bbox`. `labelstudio`: a Label "
        "Studio import list (`data.image`, `annotations`, `predictions`; config in "
        "docs/labeling.md)."
    ),
    responses={
        200: {"content": {"application/x-ndjson": {}, "application/json": {}}},
        **_errors(401, 403, 422),
    },
)
def export_labels(
    request: Request,
    services: Services,
    principal: LabelerPrincipal,
    format: Annotated[ExportFormat, Query(description="jsonl, coco or labelstudio.")] = "jsonl",
) -> Response:
    labels = exported_labels(services.catalog.db.connection)
    headers = {"Content-Disposition": f'attachment; filename="labels.{format}.json"'}
    if format == "jsonl":
        headers["Content-Disposition"] = 'attachment; filename="labels.jsonl"'
        return Response(
            "".join(to_jsonl(labels)), media_type="application/x-ndjson", headers=headers
        )
    if format == "coco":
        return JSONResponse(to_coco(labels), headers=headers)
    return JSONResponse(to_labelstudio(labels, str(request.base_url)), headers=headers)


class LabelStats(BaseModel):
    """Label counts."""

    frames: dict[str, int] = Field(description="accepted, labeled, unlabeled, leased (now).")
    labels: dict[str, int] = Field(description="total rows, current (one per frame), corrections.")
    per_class: dict[str, int] = Field(description="Current labels per class name.")
    per_labeler: dict[str, int] = Field(description="Label rows per labeler (token id).")


@router.get(
    "/labels/stats",
    response_model=LabelStats,
    summary="Label statistics",
    description=(
        "Counts: accepted, labeled, unlabeled and currently leased frames; label rows, current "
        "labels and corrections; current labels per class; label rows per labeler (token id)."
    ),
    responses=_errors(401, 403),
)
def get_label_stats(services: Services, principal: LabelerPrincipal) -> LabelStats:
    now = iso(datetime.now(UTC))
    return LabelStats(**label_stats(services.catalog.db.connection, now))


@router.get(
    "/frames/{frame_id}/image",
    summary="A frame's image",
    description="The stored image bytes of a frame, with its content type (`image/jpeg`, "
    "`image/png`). Immutable: the frame id is the sha256 of the bytes.",
    response_class=Response,
    responses={
        200: {"content": {"image/jpeg": {}, "image/png": {}}},
        **_errors(401, 403, 404),
    },
)
def frame_image(frame_id: str, services: Services, principal: LabelerPrincipal) -> Response:
    row = services.catalog.get(frame_id)
    if row is None or row.blob_key is None:
        raise NotFound(f"no stored image for frame {frame_id!r}")
    data = services.blobs.get(row.blob_key)
    media = _IMAGE_TYPES.get(row.image_format or "", "application/octet-stream")
    headers = {"Cache-Control": "private, max-age=31536000, immutable", "ETag": f'"{frame_id}"'}
    return Response(data, media_type=media, headers=headers)
