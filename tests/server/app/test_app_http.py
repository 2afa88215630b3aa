"""The app in-process: health, readiness, metrics, auth, error translation, OpenAPI, logs."""

from __future__ import annotations

import json
import logging
import re
import socket
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi import APIRouter
from testkit.prometheus import metric

from curator.errors import InvalidInputError, WireFormatError
from server import errors
from server.auth import Role
from server.logging import REQUEST_LOGGER, JsonFormatter
from server.settings import ServerSettings, load_settings
from server.warehouse import SqliteSink

MakeClient = Callable[..., AbstractContextManager[Any]]

SERVER_ERRORS = [
    errors.BadRequest,
    errors.ImageRejected,
    errors.Unauthorized,
    errors.Forbidden,
    errors.NotFound,
    errors.PayloadTooLarge,
    errors.UnsupportedMediaType,
    errors.Unavailable,
    errors.WarehouseUnavailable,
]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_healthz(client: Any) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    assert re.fullmatch(r"[0-9a-f]{32}", r.headers["X-Request-ID"])
    assert client.get("/healthz", headers={"X-Request-ID": "abc-1"}).headers["X-Request-ID"] == (
        "abc-1"
    )


def test_readyz_ok(client: Any) -> None:
    r = client.get("/readyz")
    assert r.status_code == 200
    assert r.json() == {
        "status": "ready",
        "checks": {"catalog": "ok", "blobs": "ok", "index": "ok", "warehouse": "ok"},
    }


def test_readyz_503_when_warehouse_file_cannot_open(
    make_client: MakeClient, settings: ServerSettings
) -> None:
    settings.data_dir.mkdir(parents=True)
    settings.warehouse_path.mkdir()  # a folder where the SQLite file should be
    with make_client() as c:
        r = c.get("/readyz")
    assert r.status_code == 503
    body = r.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["catalog"] == "ok" and body["checks"]["blobs"] == "ok"
    assert body["checks"]["warehouse"].startswith("WarehouseUnavailable")


def test_readyz_503_when_snowflake_port_is_closed(make_client: MakeClient, tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = load_settings(
        {
            "data_dir": tmp_path / "sf",
            "warehouse": "snowflake",
            "snowflake": {
                "account": "acc",
                "user": "u",
                "password": "hunter2-pw",
                "host": "127.0.0.1",
                "port": port,
                "protocol": "http",
            },
        },
        None,
        {},
    )
    with make_client(settings) as c:
        r = c.get("/readyz")
    assert r.status_code == 503
    assert r.json()["checks"]["warehouse"].startswith("WarehouseUnavailable")
    assert "hunter2-pw" not in r.text


def test_metrics_count_requests_by_route_and_status(client: Any) -> None:
    for _ in range(3):
        client.get("/healthz")
    client.get("/v1/whoami")
    client.get("/no/such/route")
    text = client.get("/metrics").text
    assert metric(text, "curator_server_requests_total", route="/healthz", status="200") == 3
    assert metric(text, "curator_server_requests_total", route="/v1/whoami", status="401") == 1
    assert metric(text, "curator_server_requests_total", route="<unmatched>", status="404") == 1
    assert metric(text, "curator_server_request_duration_seconds_count", route="/healthz") == 3
    assert metric(text, "curator_server_outbox_pending_rows") == 0
    assert metric(text, "curator_server_drainer_failures_total") == 0
    assert "curator_server_unhandled_errors_total 0.0" in text
    second = client.get("/metrics").text  # the first scrape is counted now
    assert metric(second, "curator_server_requests_total", route="/metrics", status="200") == 1


def test_two_apps_in_one_process_keep_their_own_metrics(
    make_client: MakeClient, tmp_path: Path
) -> None:
    other = load_settings({"data_dir": tmp_path / "other"}, None, {})
    with make_client() as a, make_client(other) as b:
        a.get("/healthz")
        a.get("/healthz")
        b.get("/healthz")
        assert (
            metric(a.get("/metrics").text, "curator_server_requests_total", route="/healthz") == 2
        )
        assert (
            metric(b.get("/metrics").text, "curator_server_requests_total", route="/healthz") == 1
        )


def test_outbox_pending_and_drainer_failures_are_exported(
    make_client: MakeClient, settings: ServerSettings
) -> None:
    class DownSink(SqliteSink):
        def _ping(self) -> None:
            raise errors.WarehouseUnavailable("down (test)")

        def _upsert(self, table: Any, rows: Any) -> None:
            raise errors.WarehouseUnavailable("down (test)")

    with make_client(sink=DownSink(settings.data_dir / "w.sqlite3")) as c:
        services = c.app.state.services
        services.drainer.stop()
        services.outbox.enqueue("device_heartbeats", [heartbeat()])
        services.drainer.run_once()
        text = c.get("/metrics").text
        assert c.get("/readyz").json()["checks"]["warehouse"].startswith("WarehouseUnavailable")
    assert metric(text, "curator_server_outbox_pending_rows") == 1
    assert metric(text, "curator_server_drainer_failures_total") == 1


def heartbeat() -> dict[str, Any]:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    return {"device_id": "cam-01", "sent_at": at, "counters": {"seen": 3}, "received_at": at}


def test_whoami_refuses_missing_garbage_and_revoked_tokens(client: Any) -> None:
    tokens = client.app.state.services.tokens
    issued = tokens.create("labeler")
    tokens.revoke(issued.token_id)
    for headers in (
        {},
        {"Authorization": "Basic dXNlcjpwdw=="},
        bearer("garbage"),
        bearer("cur_" + "A" * 43),
        bearer(issued.token),
    ):
        r = client.get("/v1/whoami", headers=headers)
        assert r.status_code == 401, headers
        assert r.headers["WWW-Authenticate"] == "Bearer"
        assert r.json()["error"]["code"] == "unauthorized"
        assert issued.token not in r.text


@pytest.mark.parametrize(
    ("role", "device_id"), [("device", "cam-01"), ("labeler", None), ("admin", None)]
)
def test_whoami_answers_each_role(client: Any, role: str, device_id: str | None) -> None:
    issued = client.app.state.services.tokens.create(role, device_id)
    r = client.get("/v1/whoami", headers=bearer(issued.token))
    assert r.status_code == 200
    assert r.json() == {"token_id": issued.token_id, "role": role, "device_id": device_id}


def test_unknown_route_and_method_answer_json(client: Any) -> None:
    r = client.get("/v1/nothing-here")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = client.post("/healthz")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"


def failing_router() -> APIRouter:
    router = APIRouter()

    @router.get("/test/server-error/{index}")
    def server_error(index: int) -> None:
        raise SERVER_ERRORS[index](f"{SERVER_ERRORS[index].__name__} happened")

    @router.get("/test/invalid-input")
    def invalid_input() -> None:
        raise InvalidInputError("width must be > 0, got -1")

    @router.get("/test/wire-format")
    def wire_format() -> None:
        raise WireFormatError("schema_version 9 is not supported")

    @router.get("/test/bug")
    def bug() -> None:
        raise RuntimeError("secret internal detail")

    return router


@pytest.mark.parametrize("index", range(len(SERVER_ERRORS)))
def test_server_errors_map_to_their_status(make_client: MakeClient, index: int) -> None:
    cls = SERVER_ERRORS[index]
    code = re.sub(r"(?<!^)(?=[A-Z])", "_", cls.__name__).lower()
    with make_client(routers=[failing_router()]) as c:
        r = c.get(f"/test/server-error/{index}")
        unhandled = metric(c.get("/metrics").text, "curator_server_unhandled_errors_total")
    assert r.status_code == cls.status_code
    assert r.json() == {"error": {"code": code, "message": f"{cls.__name__} happened"}}
    assert unhandled == 0
    assert ("WWW-Authenticate" in r.headers) == (cls is errors.Unauthorized)


def test_curator_errors_and_bad_requests_are_4xx_never_the_catch_all(
    make_client: MakeClient,
) -> None:
    with make_client(routers=[failing_router()]) as c:
        r = c.get("/test/invalid-input")
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_input_error"
        r = c.get("/test/wire-format")
        assert r.status_code == 400 and r.json()["error"]["code"] == "wire_format_error"
        r = c.get("/test/server-error/not-a-number")
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"
        assert "index" in r.json()["error"]["message"]
        text = c.get("/metrics").text
    assert metric(text, "curator_server_unhandled_errors_total") == 0


def test_unexpected_errors_answer_500_without_details(
    make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    with make_client(routers=[failing_router()], raise_server_exceptions=False) as c:
        r = c.get("/test/bug")
        text = c.get("/metrics").text
    assert r.status_code == 500
    assert r.json() == {"error": {"code": "internal_error", "message": "internal server error"}}
    assert "secret internal detail" not in r.text and "Traceback" not in r.text
    assert metric(text, "curator_server_unhandled_errors_total") == 1
    assert any("secret internal detail" in (rec.exc_text or "") for rec in caplog.records) or any(
        rec.exc_info and "secret internal detail" in str(rec.exc_info[1]) for rec in caplog.records
    )


def test_openapi_describes_every_route(client: Any) -> None:
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    assert {"/healthz", "/readyz", "/metrics", "/v1/whoami"} <= set(paths)
    for path, operations in paths.items():
        for method, op in operations.items():
            assert op.get("summary") and op.get("description"), (method, path)
    for name, schema in spec["components"]["schemas"].items():
        if name in {"HTTPValidationError", "ValidationError"}:
            continue  # FastAPI's own
        assert schema.get("description"), name
    whoami = paths["/v1/whoami"]["get"]
    assert "401" in whoami["responses"]


def test_one_json_log_line_per_request_without_secrets(
    client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    issued = client.app.state.services.tokens.create(Role.DEVICE, "cam-07")
    with caplog.at_level(logging.INFO, logger=REQUEST_LOGGER):
        client.get("/v1/whoami", headers={**bearer(issued.token), "X-Request-ID": "req-42"})
        client.get("/v1/whoami", headers=bearer("garbage-token-value"))
    lines = [
        json.loads(JsonFormatter().format(rec))
        for rec in caplog.records
        if rec.name == REQUEST_LOGGER
    ]
    assert len(lines) == 2
    ok, refused = lines
    assert ok["method"] == "GET" and ok["path"] == "/v1/whoami" and ok["status"] == 200
    assert (ok["role"], ok["device_id"], ok["request_id"]) == ("device", "cam-07", "req-42")
    assert ok["duration_ms"] >= 0
    assert refused["status"] == 401 and refused["role"] is None
    dumped = json.dumps(lines)
    assert issued.token not in dumped and "garbage-token-value" not in dumped
    assert "Bearer" not in dumped and "authorization" not in dumped.lower()
