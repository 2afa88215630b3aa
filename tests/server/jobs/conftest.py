"""Fixtures for the job tests: a real catalog file, job store, SQLite huey queue and registry."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from testkit.jobs import ManualClock

from server.blobs import LocalBlobStore
from server.catalog import Catalog
from server.jobs import JobQueue, JobStore, make_huey
from server.registry import ModelRegistry


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[Catalog]:
    opened = Catalog(tmp_path / "catalog.sqlite")
    yield opened
    opened.close()


@pytest.fixture
def store(catalog: Catalog, clock: ManualClock) -> JobStore:
    return JobStore(catalog.db, clock=clock)


@pytest.fixture
def queue(tmp_path: Path) -> Iterator[JobQueue]:
    opened = JobQueue(make_huey(tmp_path))
    yield opened
    opened.close()


@pytest.fixture
def registry(tmp_path: Path, catalog: Catalog) -> ModelRegistry:
    return ModelRegistry(catalog, LocalBlobStore(tmp_path / "blobs"))
