"""Fixtures for the end-to-end tests: real ``python -m server serve`` processes, CLI tokens and
the fakesnow server of the warehouse tests.

:class:`ServeProcess` (tests/testkit/server.py) runs the server on 127.0.0.1 and a free port.
:class:`FakeSnowServer` is loaded from
tests/server/warehouse/conftest.py by path (test folders are not packages).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from testkit.server import ServeProcess, create_token

ROOT = Path(__file__).resolve().parents[3]


def _load_warehouse_conftest() -> Any:
    path = ROOT / "tests" / "server" / "warehouse" / "conftest.py"
    spec = importlib.util.spec_from_file_location("_e2e_warehouse_helpers", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_warehouse = _load_warehouse_conftest()
FakeSnowServer = _warehouse.FakeSnowServer


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Any]:
    """``serve(env=None) -> ServeProcess`` on ``tmp_path/data`` (not started); all are killed
    at teardown."""
    made: list[ServeProcess] = []

    def make(env: Mapping[str, str] | None = None) -> ServeProcess:
        made.append(ServeProcess(tmp_path / "data", tmp_path / "logs", env))
        return made[-1]

    yield make
    for process in made:
        process.kill()


@pytest.fixture
def fakesnow(tmp_path: Path) -> Iterator[Any]:
    """A started fakesnow server of this test alone (``.database``: the database to use,
    ``.schema()``: a fresh schema name), closed at teardown."""
    server = FakeSnowServer(tmp_path / "fakesnow")
    server.database = _warehouse.DATABASE
    server.schema = _warehouse.unique_schema
    server.start()
    try:
        yield server
    finally:
        server.close()


def _create_tokens(data_dir: Path, device_ids: Sequence[str]) -> dict[str, str]:
    """device_id -> token: the first issued alone (it creates the catalog), the rest at once."""
    tokens = {device_ids[0]: create_token(data_dir, device_ids[0])}
    with ThreadPoolExecutor(max_workers=4) as pool:
        rest = list(pool.map(lambda d: create_token(data_dir, d), device_ids[1:]))
    tokens.update(zip(device_ids[1:], rest, strict=True))
    return tokens


@pytest.fixture
def create_tokens() -> Any:
    """``create_tokens(data_dir, device_ids) -> {device_id: token}``, issued by the CLI
    (``curator-server token create --role device``)."""
    return _create_tokens
