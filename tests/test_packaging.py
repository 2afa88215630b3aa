"""Each extra carries what its code needs: every lazy ``require(module, extra=...)`` names an
extra whose dependencies install that module, so an extra works installed alone."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# import name -> distribution name, where they differ
DISTRIBUTION = {
    "faiss": "faiss-cpu",
    "PIL": "pillow",
    "av": "av",
    "sklearn": "scikit-learn",
    "pydantic_settings": "pydantic-settings",
}


def _requirement_names(specs: list[str]) -> set[str]:
    return {re.split(r"[<>=!~;\[ ]", s, maxsplit=1)[0].lower() for s in specs}


def _require_calls() -> list[tuple[str, str, str]]:
    calls = []
    for package in ("curator", "edge_selector", "server"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if (
                    isinstance(node, ast.Call)
                    and getattr(node.func, "id", getattr(node.func, "attr", None)) == "require"
                    and node.args
                    and isinstance(node.args[0], ast.Constant)
                ):
                    extra = next(k.value for k in node.keywords if k.arg == "extra")
                    assert isinstance(extra, ast.Constant), f"{path}: extra must be a literal"
                    module = node.args[0].value.split(".")[0]
                    calls.append((str(path.relative_to(ROOT)), module, extra.value))
    return calls


def test_every_lazy_import_is_provided_by_its_extra() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = {k: _requirement_names(v) for k, v in project["optional-dependencies"].items()}
    assert {"edge", "server", "train", "notebooks"} <= set(extras)
    calls = _require_calls()
    assert {m for _, m, _ in calls} >= {"faiss", "onnxruntime", "av", "onnx"}
    missing = [
        (path, module, extra)
        for path, module, extra in calls
        if DISTRIBUTION.get(module, module).lower() not in extras.get(extra, set())
    ]
    assert missing == []


def test_base_dependencies_are_only_numpy_and_pydantic() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert _requirement_names(project["dependencies"]) == {"numpy", "pydantic"}
