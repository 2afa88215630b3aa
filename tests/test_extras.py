"""Each extra works installed alone: a fresh virtual environment with the base package and one
extra (pinned to uv.lock, wheels from uv's cache) runs that extra's code, and code that needs a
missing extra fails with the command that installs it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# code each extra must run on its own; it prints "ok" at the end
CHECKS = {
    "": (
        "import curator, curator.wire, curator.selection, curator.dedup\n"
        "from curator.index import FaissIndex\n"
        "try:\n"
        "    FaissIndex(4)\n"
        "except curator.MissingDependencyError as e:\n"
        "    assert \"pip install 'curator[server]'\" in str(e), e\n"
        "else:\n"
        "    raise SystemExit('faiss importable without the server extra')\n"
    ),
    "edge": (
        "import onnxruntime, av\n"
        "from curator.inference import OnnxModel\n"
        "from curator.data.video import read_frames\n"
    ),
    "server": (
        "import numpy as np\n"
        "from curator.index import FaissIndex\n"
        "index = FaissIndex(4)\n"
        "index.add([7], np.eye(4, dtype=np.float32)[:1])\n"
        "assert index.search(np.eye(4, dtype=np.float32)[:1], 1)[1][0, 0] == 7\n"
        "import fastapi, sqlite_utils, snowflake.connector, huey\n"
    ),
    "notebooks": "import matplotlib, faiss, onnxruntime\n",
}


def _uv() -> list[str] | None:
    if shutil.which("uv"):
        return ["uv"]
    probe = subprocess.run([sys.executable, "-m", "uv", "--version"], capture_output=True)
    return [sys.executable, "-m", "uv"] if probe.returncode == 0 else None


@pytest.mark.integration
@pytest.mark.parametrize("extra", sorted(CHECKS))
def test_extra_installed_alone(extra: str, tmp_path: Path) -> None:
    uv = _uv()
    if uv is None:
        pytest.skip("uv is not installed")
    venv = tmp_path / "venv"
    env = {**os.environ, "VIRTUAL_ENV": str(venv)}
    env.pop("PYTHONPATH", None)
    subprocess.run([*uv, "venv", "-q", "--python", sys.executable, str(venv)], check=True, env=env)
    target = f"{ROOT}[{extra}]" if extra else str(ROOT)
    # pinned to the versions of uv.lock, so the wheels are already in uv's cache
    constraints = tmp_path / "constraints.txt"
    subprocess.run(
        [
            *uv,
            "export",
            "-q",
            "--frozen",
            "--all-extras",
            "--no-hashes",
            "--no-emit-project",
            "-o",
            str(constraints),
        ],
        check=True,
        cwd=ROOT,
        env=env,
    )
    subprocess.run(
        [
            *uv,
            "pip",
            "install",
            "-q",
            "--python",
            str(venv / "bin" / "python"),
            "-c",
            str(constraints),
            target,
        ],
        check=True,
        env=env,
        cwd=tmp_path,
    )
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-c", CHECKS[extra] + "print('ok')"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
