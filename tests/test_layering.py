"""The dependency rules of DESIGN.md: edge_selector -> curator <- server, and a light curator."""

from __future__ import annotations

import ast
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("fastapi", "faiss", "onnxruntime", "torch", "snowflake", "onnx", "av", "PIL", "lightly")


def _imported_top_levels(package: str) -> dict[str, set[str]]:
    """Top-level module names each file of ``package`` imports, at any depth of the file."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        names: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(ROOT))] = names
    return found


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("curator", {"edge_selector", "server"}),
        ("edge_selector", {"server"}),
        ("server", {"edge_selector"}),
    ],
)
def test_dependencies_point_one_way(package: str, forbidden: set[str]) -> None:
    offenders = {
        f: sorted(n & forbidden) for f, n in _imported_top_levels(package).items() if n & forbidden
    }
    assert offenders == {}


def test_importing_curator_and_all_its_modules_stays_light() -> None:
    import curator

    modules = [m.name for m in pkgutil.walk_packages(curator.__path__, "curator.")]
    assert "curator.uncertainty" in modules
    code = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=ROOT
    )
    assert json.loads(out.stdout) == []
