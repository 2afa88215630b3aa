"""``import edge_selector`` stays light; its exported names resolve lazily to the real objects."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

import edge_selector

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("PIL", "onnxruntime", "av", "torch", "faiss", "sqlite_utils", "pydantic", "server")


def _loaded_after(code: str) -> list[str]:
    probe = (
        f"{code}\nimport json, sys\n"
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True, cwd=ROOT
    )
    return list(json.loads(done.stdout))


def test_import_edge_selector_loads_no_heavy_module() -> None:
    assert _loaded_after("import edge_selector") == []


def test_using_the_buffer_names_never_loads_pillow_or_onnxruntime() -> None:
    code = "from edge_selector import FrameBuffer, KeptFrame, encode_image, AddOutcome"
    loaded = _loaded_after(code)
    assert "sqlite_utils" in loaded and "pydantic" in loaded  # the buffer really was imported
    assert not {"PIL", "onnxruntime", "server"} & set(loaded)


@pytest.mark.parametrize("name", edge_selector.__all__)
def test_every_exported_name_is_the_object_of_its_module(name: str) -> None:
    home = edge_selector._HOMES[name]
    assert getattr(edge_selector, name) is getattr(importlib.import_module(home), name)
    assert name in dir(edge_selector)


def test_the_exports_are_the_buffers_public_names() -> None:
    from edge_selector import buffer

    assert set(edge_selector._HOMES) == set(edge_selector.__all__)
    assert set(buffer.__all__) <= set(edge_selector.__all__)
    assert {"KeptFrame", "encode_image"} <= set(edge_selector.__all__)
    assert edge_selector.FrameTooLargeError is buffer.FrameTooLargeError


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Buffer'"):
        _ = edge_selector.Buffer
    assert not hasattr(edge_selector, "utils")
