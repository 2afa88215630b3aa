"""Exports (JSONL, COCO, Label Studio) and statistics from a real catalog, checked by hand."""

from __future__ import annotations

import json
from typing import Any

from server.catalog.answers import iso
from server.ingest import IngestService
from server.labeling import (
    LabelStore,
    exported_labels,
    label_stats,
    to_coco,
    to_jsonl,
    to_labelstudio,
)


def labeled(store: LabelStore, frames: list[str], clock: Any) -> None:
    store.register_class_names("m1", ["cat", "dog", "bird"])
    store.label(frames[0], "cat", "alice")
    clock.advance(1)
    store.label(frames[1], "dog", "alice")
    clock.advance(1)
    store.label(frames[0], "bird", "bob")  # a correction of frames[0]
    clock.advance(1)
    store.label(frames[2], "dog", "bob")


def test_jsonl_has_one_current_label_per_frame(
    store: LabelStore, frames: list[str], clock: Any
) -> None:
    labeled(store, frames, clock)
    lines = list(to_jsonl(exported_labels(store.catalog.db.connection)))
    assert all(line.endswith("\n") for line in lines)
    rows = [json.loads(line) for line in lines]
    assert [(r["frame_id"], r["class_name"], r["labeler"]) for r in rows] == [
        (frames[0], "bird", "bob"),
        (frames[1], "dog", "alice"),
        (frames[2], "dog", "bob"),
    ]
    assert rows[0]["image"] == f"/v1/frames/{frames[0]}/image"
    assert rows[0]["labeled_at"] == iso(clock.now.replace(second=2))
    assert rows[0]["model_version"] == "m1" and rows[0]["label_id"].startswith("label_")


def test_coco_has_images_categories_and_full_image_annotations(
    store: LabelStore, frames: list[str], clock: Any
) -> None:
    labeled(store, frames, clock)
    coco = json.loads(json.dumps(to_coco(exported_labels(store.catalog.db.connection))))
    assert set(coco) == {"info", "images", "categories", "annotations"}
    assert coco["categories"] == [
        {"id": 1, "name": "bird", "supercategory": "class"},
        {"id": 2, "name": "dog", "supercategory": "class"},
    ]
    assert [i["id"] for i in coco["images"]] == [1, 2, 3]
    assert coco["images"][0] | {} == {
        "id": 1,
        "file_name": f"{frames[0]}.jpeg",
        "coco_url": f"/v1/frames/{frames[0]}/image",
        "width": 16,
        "height": 12,
        "frame_id": frames[0],
    }
    names = {c["id"]: c["name"] for c in coco["categories"]}
    by_image = {a["image_id"]: a for a in coco["annotations"]}
    assert [names[by_image[i]["category_id"]] for i in (1, 2, 3)] == ["bird", "dog", "dog"]
    a = by_image[1]
    assert a["bbox"] == [0, 0, 16, 12] and a["area"] == 192 and a["iscrowd"] == 0
    assert len({x["id"] for x in coco["annotations"]}) == 3


def test_labelstudio_is_a_list_of_tasks_with_annotations_and_predictions(
    store: LabelStore, frames: list[str], clock: Any
) -> None:
    labeled(store, frames, clock)
    tasks = to_labelstudio(exported_labels(store.catalog.db.connection), "http://h:8000/")
    tasks = json.loads(json.dumps(tasks))
    assert isinstance(tasks, list) and len(tasks) == 3
    t = tasks[0]
    assert t["data"]["image"] == f"http://h:8000/v1/frames/{frames[0]}/image"
    (ann,) = t["annotations"]
    assert ann["result"] == [
        {
            "from_name": "label",
            "to_name": "image",
            "type": "choices",
            "value": {"choices": ["bird"]},
        }
    ]
    assert ann["completed_by"] == "bob"
    (pred,) = t["predictions"]
    assert pred["result"][0]["value"]["choices"] == ["cat"]  # class 0 of m1
    assert pred["model_version"] == "m1" and 0.4 <= pred["score"] <= 0.41


def test_an_empty_catalog_exports_nothing(store: LabelStore) -> None:
    labels = exported_labels(store.catalog.db.connection)
    assert labels == [] and list(to_jsonl(labels)) == [] and to_labelstudio(labels) == []
    assert to_coco(labels)["images"] == []


def test_stats_count_classes_labelers_frames_and_corrections(
    store: LabelStore, service: IngestService, frames: list[str], clock: Any
) -> None:
    labeled(store, frames, clock)
    store.lease("carol", count=3, lease_s=60)
    stats = label_stats(store.catalog.db.connection, iso(clock.now))
    assert stats == {
        "frames": {"accepted": 20, "labeled": 3, "unlabeled": 17, "leased": 3},
        "labels": {"total": 4, "current": 3, "corrections": 1},
        "per_class": {"bird": 1, "dog": 2},
        "per_labeler": {"alice": 2, "bob": 2},
    }
    clock.advance(60)
    assert label_stats(store.catalog.db.connection, iso(clock.now))["frames"]["leased"] == 0
