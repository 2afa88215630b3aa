from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import curator.wire

ROOT = Path(__file__).resolve().parents[3]
# numpy, pydantic and the packages pydantic itself imports
ALLOWED = {"curator", "numpy", "pydantic", "pydantic_core", "typing_extensions"}
ALLOWED |= {"annotated_types", "typing_inspection"}


def test_importing_curator_wire_loads_only_numpy_pydantic_and_the_standard_library() -> None:
    code = (
        "import json, sys\n"
        "before = set(sys.modules)\n"
        "import curator.wire\n"
        "top = {m.split('.')[0] for m in set(sys.modules) - before}\n"
        "print(json.dumps(sorted(top - set(sys.stdlib_module_names))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=ROOT
    )
    loaded = {m for m in json.loads(out.stdout) if not m.startswith("_sysconfigdata")}
    assert {"curator", "numpy", "pydantic"} <= loaded
    assert loaded - ALLOWED == set()


def test_the_documented_example_runs() -> None:
    text = (ROOT / "docs" / "wire.md").read_text()
    example = text.split("\n## Example\n", 1)[1]
    code = re.search(r"```python\n(.*?)\n```", example, re.S)
    assert code is not None
    exec(compile(code.group(1), "docs/wire.md", "exec"), {})


def test_public_api_is_exported() -> None:
    assert sorted(curator.wire.__all__) == sorted(
        n for n in curator.wire.__all__ if hasattr(curator.wire, n)
    )
    assert {"encode_batch", "decode_batch", "frame_problems", "FrameRecord"} <= set(
        curator.wire.__all__
    )
