"""Label exports and statistics, from the current label of each labeled frame.

- :func:`to_jsonl`: one JSON object per line: ``frame_id``, ``class_name``, ``labeler``,
  ``labeled_at``, ``label_id``, ``model_version``, ``image`` (the image path).
- :func:`to_coco`: a COCO dataset (``info``, ``images``, ``categories``, ``annotations``). Labels
  are image-level, so each annotation carries the frame's class with a bounding box covering
  the whole image (``[0, 0, width, height]``, ``area = width * height``, ``iscrowd = 0``): the
  form COCO detection importers (pycocotools, FiftyOne, CVAT) accept, since they expect ``bbox``.
- :func:`to_labelstudio`: a Label Studio import list: one task per frame with ``data.image``,
  the label as an ``annotations`` result and the model's guess as a ``predictions`` result, for
  the labeling config ``<Choices name="label" toName="image">`` (docs/labeling.md).
- :func:`label_stats`: counts per class, per labeler, labeled and unlabeled frames, corrections.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from server.catalog.answers import iso
from server.labeling.classes import class_names
from server.labeling.rows import image_path

__all__ = [
    "EXPORT_FORMATS",
    "ExportedLabel",
    "exported_labels",
    "label_stats",
    "to_coco",
    "to_jsonl",
    "to_labelstudio",
]

EXPORT_FORMATS = ("jsonl", "coco", "labelstudio")


@dataclass(frozen=True)
class ExportedLabel:
    """A frame's current label with what the exports need of the frame."""

    label_id: str
    frame_id: str
    class_name: str
    labeler: str
    labeled_at: datetime
    model_version: str | None
    width: int | None
    height: int | None
    image_format: str | None
    predicted_class: str | None
    confidence: float | None


def exported_labels(conn: sqlite3.Connection) -> list[ExportedLabel]:
    """The current label of every labeled frame, in frame ingest order."""
    rows = conn.execute(
        "SELECT l.label_id, l.frame_id, l.class_name, l.labeler, l.created_at, f.model_version,"
        " f.width, f.height, f.image_format, f.predicted_class, f.class_probabilities"
        " FROM labels l JOIN frames f ON f.frame_id = l.frame_id"
        " WHERE NOT EXISTS (SELECT 1 FROM labels n WHERE n.supersedes = l.label_id)"
        " ORDER BY f.ingest_seq"
    ).fetchall()
    names: dict[str | None, tuple[str, ...]] = {}
    out = []
    for label_id, frame_id, cls, labeler, at, version, w, h, fmt, predicted, probs in rows:
        if version not in names:
            names[version] = class_names(conn, version)
        guess, confidence = None, None
        if predicted is not None and probs is not None:
            confidence = float(json.loads(probs)[predicted])
            known = names[version]
            guess = known[predicted] if predicted < len(known) else None
        out.append(
            ExportedLabel(
                label_id,
                frame_id,
                cls,
                labeler,
                datetime.fromisoformat(at),
                version,
                w,
                h,
                fmt,
                guess,
                confidence,
            )
        )
    return out


def to_jsonl(labels: list[ExportedLabel]) -> Iterator[str]:
    """One JSON line (with its newline) per label."""
    for x in labels:
        line = {
            "frame_id": x.frame_id,
            "class_name": x.class_name,
            "labeler": x.labeler,
            "labeled_at": iso(x.labeled_at),
            "label_id": x.label_id,
            "model_version": x.model_version,
            "image": image_path(x.frame_id),
        }
        yield json.dumps(line, separators=(",", ":")) + "\n"


def to_coco(labels: list[ExportedLabel]) -> dict[str, Any]:
    """A COCO dataset; categories are the label class names, sorted, ids from 1."""
    categories = {name: i for i, name in enumerate(sorted({x.class_name for x in labels}), 1)}
    images, annotations = [], []
    for n, x in enumerate(labels, 1):
        w, h = x.width or 0, x.height or 0
        images.append(
            {
                "id": n,
                "file_name": f"{x.frame_id}.{x.image_format or 'jpeg'}",
                "coco_url": image_path(x.frame_id),
                "width": w,
                "height": h,
                "frame_id": x.frame_id,
            }
        )
        annotations.append(
            {
                "id": n,
                "image_id": n,
                "category_id": categories[x.class_name],
                "bbox": [0, 0, w, h],
                "area": w * h,
                "iscrowd": 0,
                "segmentation": [],
                "attributes": {"labeler": x.labeler, "labeled_at": iso(x.labeled_at)},
            }
        )
    return {
        "info": {"description": "curator labels (image-level classes as full-image boxes)"},
        "images": images,
        "categories": [
            {"id": i, "name": name, "supercategory": "class"} for name, i in categories.items()
        ],
        "annotations": annotations,
    }


def _choice(name: str) -> dict[str, Any]:
    return {
        "from_name": "label",
        "to_name": "image",
        "type": "choices",
        "value": {"choices": [name]},
    }


def to_labelstudio(labels: list[ExportedLabel], base_url: str = "") -> list[dict[str, Any]]:
    """Label Studio tasks; ``data.image`` is ``base_url`` + the image path."""
    tasks = []
    for x in labels:
        task: dict[str, Any] = {
            "data": {
                "image": base_url.rstrip("/") + image_path(x.frame_id),
                "frame_id": x.frame_id,
            },
            "annotations": [
                {
                    "result": [_choice(x.class_name)],
                    "created_at": iso(x.labeled_at),
                    "completed_by": x.labeler,
                }
            ],
        }
        if x.predicted_class is not None:
            task["predictions"] = [
                {
                    "model_version": x.model_version,
                    "score": x.confidence,
                    "result": [_choice(x.predicted_class)],
                }
            ]
        tasks.append(task)
    return tasks


def label_stats(conn: sqlite3.Connection, now: str) -> dict[str, Any]:
    """Counts: ``frames`` (accepted, labeled, unlabeled, leased now), ``labels`` (rows, current,
    corrections), ``per_class`` (current labels), ``per_labeler`` (every row they stored)."""
    accepted, labeled = conn.execute(
        "SELECT count(*), count(*) FILTER (WHERE EXISTS"
        " (SELECT 1 FROM labels l WHERE l.frame_id = f.frame_id))"
        " FROM frames f WHERE f.status = 'accepted'"
    ).fetchone()
    (leased,) = conn.execute(
        "SELECT count(*) FROM label_leases WHERE released_at IS NULL AND expires_at > ?", (now,)
    ).fetchone()
    total, corrections = conn.execute("SELECT count(*), count(supersedes) FROM labels").fetchone()
    per_class = dict(
        conn.execute(
            "SELECT class_name, count(*) FROM labels l WHERE NOT EXISTS"
            " (SELECT 1 FROM labels n WHERE n.supersedes = l.label_id)"
            " GROUP BY class_name ORDER BY class_name"
        ).fetchall()
    )
    per_labeler = dict(
        conn.execute(
            "SELECT labeler, count(*) FROM labels GROUP BY labeler ORDER BY labeler"
        ).fetchall()
    )
    return {
        "frames": {
            "accepted": accepted,
            "labeled": labeled,
            "unlabeled": accepted - labeled,
            "leased": leased,
        },
        "labels": {"total": total, "current": labeled, "corrections": corrections},
        "per_class": per_class,
        "per_labeler": per_labeler,
    }
