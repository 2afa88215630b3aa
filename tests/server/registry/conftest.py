"""Fixtures for the registry: a real catalog file, blob folder, outbox and SQLite warehouse."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from testkit.models import linear_onnx

from server.blobs import LocalBlobStore
from server.catalog import Catalog
from server.registry import ModelRegistry
from server.warehouse import Outbox, SqliteSink


class StepClock:
    """An aware clock that moves one second per call."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[Catalog]:
    with_catalog = Catalog(tmp_path / "catalog.sqlite")
    yield with_catalog
    with_catalog.db.close()


@pytest.fixture
def outbox(tmp_path: Path, catalog: Catalog) -> Iterator[Outbox]:
    box = Outbox(tmp_path / "catalog.sqlite")
    yield box
    box.close()


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[SqliteSink]:
    the_sink = SqliteSink(tmp_path / "warehouse.sqlite")
    yield the_sink
    the_sink.close()


@pytest.fixture
def registry(tmp_path: Path, catalog: Catalog, outbox: Outbox) -> ModelRegistry:
    return ModelRegistry(catalog, LocalBlobStore(tmp_path / "blobs"), outbox, clock=StepClock())


@pytest.fixture(scope="session")
def model_v1() -> bytes:
    return bytes(linear_onnx(version="m1", seed=1))


@pytest.fixture(scope="session")
def model_v2() -> bytes:
    return bytes(linear_onnx(version="m2", seed=2))
