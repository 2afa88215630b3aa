"""Fixtures for the server app: settings under tmp_path and an in-process client factory."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi import APIRouter

from server.app import create_app
from server.settings import ServerSettings, load_settings
from server.warehouse import MetadataSink

with warnings.catch_warnings():
    # starlette 1.x warns at import that its TestClient moves to httpx2; not our code
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

MakeClient = Callable[..., AbstractContextManager[Any]]


@pytest.fixture
def settings(tmp_path: Path) -> ServerSettings:
    return load_settings({"data_dir": tmp_path / "data"}, None, {})


@pytest.fixture
def make_client(settings: ServerSettings) -> MakeClient:
    """``make_client(settings=..., sink=..., routers=..., raise_server_exceptions=...)``: a
    started app (lifespan run) behind an in-process ``TestClient``."""

    @contextmanager
    def make(
        app_settings: ServerSettings | None = None,
        *,
        sink: MetadataSink | None = None,
        routers: Sequence[APIRouter] = (),
        raise_server_exceptions: bool = True,
    ) -> Iterator[Any]:
        app = create_app(app_settings or settings, sink=sink, extra_routers=routers)
        with TestClient(app, raise_server_exceptions=raise_server_exceptions) as c:
            yield c

    return make


@pytest.fixture
def client(make_client: MakeClient) -> Iterator[Any]:
    with make_client() as c:
        yield c
