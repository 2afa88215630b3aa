from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from curator.wire import BatchResult, FrameResult

DOC = Path(__file__).resolve().parents[3] / "docs" / "wire.md"
FID = "ab" * 32


def _doc_block(section: str, language: str) -> str:
    """The first fenced ``language`` block under the ``## section`` heading of docs/wire.md."""
    text = DOC.read_text()
    body = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(rf"```{language}\n(.*?)\n```", body, re.S)
    assert match, f"no {language} block under '## {section}'"
    return match.group(1)


def test_the_documented_result_json_is_what_the_models_serialise() -> None:
    documented = _doc_block("Result JSON", "json")
    result = BatchResult.model_validate_json(documented)
    assert [r.status for r in result.results] == ["accepted", "duplicate", "rejected"]
    assert result.model_dump(mode="json") == json.loads(documented)
    assert (result.count("accepted"), result.count("duplicate"), result.count("rejected")) == (
        1,
        1,
        1,
    )


def test_results_serialise_with_explicit_nulls() -> None:
    result = BatchResult(
        batch_id="b-1",
        results=(
            FrameResult(frame_id=FID, device_seq=1, status="accepted"),
            FrameResult(
                frame_id=FID, device_seq=2, status="duplicate", duplicate_of="cd" * 32, similarity=1
            ),
        ),
    )
    assert json.loads(result.model_dump_json()) == {
        "schema_version": 1,
        "batch_id": "b-1",
        "results": [
            {
                "frame_id": FID,
                "device_seq": 1,
                "status": "accepted",
                "duplicate_of": None,
                "similarity": None,
                "reason": None,
            },
            {
                "frame_id": FID,
                "device_seq": 2,
                "status": "duplicate",
                "duplicate_of": "cd" * 32,
                "similarity": 1.0,
                "reason": None,
            },
        ],
    }


@pytest.mark.parametrize(
    "fields",
    [
        {"status": "accepted", "reason": "why"},
        {"status": "accepted", "duplicate_of": FID, "similarity": 0.9},
        {"status": "duplicate", "duplicate_of": FID},
        {"status": "duplicate", "similarity": 0.9},
        {"status": "rejected"},
        {"status": "rejected", "reason": ""},
        {"status": "duplicate", "duplicate_of": FID, "similarity": 1.5},
        {"status": "duplicate", "duplicate_of": FID, "similarity": float("nan")},
        {"status": "lost"},
        {"status": "accepted", "note": "extra"},
    ],
)
def test_fields_must_match_the_status(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        FrameResult(frame_id=FID, device_seq=1, **fields)


def _models(schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {**schema.get("$defs", {}), "(root)": schema}


@pytest.mark.parametrize("model", [FrameResult, BatchResult])
def test_every_field_has_a_description_for_openapi(model: type[BaseModel]) -> None:
    for name, definition in _models(model.model_json_schema()).items():
        assert definition.get("description"), f"{name} has no description"
        for field, spec in definition["properties"].items():
            assert spec.get("description"), f"{name}.{field} has no description"
