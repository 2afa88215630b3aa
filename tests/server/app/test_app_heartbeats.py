"""POST /v1/heartbeats and GET /v1/devices through the real app (in-process client): auth,
idempotent answers, validation errors as JSON 4xx, the warehouse row, the metrics."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from testkit.prometheus import metric

from curator.wire import DeviceHeartbeat
from server.catalog.heartbeats import HeartbeatStore

SENT = "2026-01-01T12:00:00.000001+02:00"


def heartbeat(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "schema_version": 1,
        "device_id": "cam-1",
        "sent_at": SENT,
        "started_at": "2026-01-01T06:00:00Z",
        "model_version": "m1",
        "software_version": "0.1.0",
        "counters": {"frames.seen": 21600, "frames.kept": 410, "dropped.black": 12},
        "buffer_frames": 30,
        "buffer_bytes": 1048576,
        "buffer_max_bytes": 1073741824,
        "last_device_seq": 410,
    }
    body.update(fields)
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def stored(client: Any) -> int:
    return HeartbeatStore(client.app.state.services.catalog).count()


@pytest.fixture
def app(make_client: Any) -> Any:
    with make_client() as c:
        tokens = c.app.state.services.tokens
        c.device = tokens.create("device", "cam-1").token
        c.other_device = tokens.create("device", "cam-2").token
        c.labeler = tokens.create("labeler").token
        c.admin = tokens.create("admin").token
        c.app.state.services.drainer.stop()  # the outbox keeps what the tests look at
        yield c


def post(client: Any, body: Any, token: str | None) -> Any:
    headers = {} if token is None else bearer(token)
    if isinstance(body, bytes | str):
        headers["Content-Type"] = "application/json"
        return client.post("/v1/heartbeats", content=body, headers=headers)
    return client.post("/v1/heartbeats", json=body, headers=headers)


def test_a_heartbeat_is_acked_stored_and_logged_to_the_warehouse(app: Any) -> None:
    before = datetime.now(UTC)
    r = post(app, heartbeat(), app.device)
    after = datetime.now(UTC)
    assert r.status_code == 200, r.text
    ack = r.json()
    assert set(ack) == {"device_id", "received_at", "duplicate"}
    assert ack["device_id"] == "cam-1" and ack["duplicate"] is False
    assert before <= datetime.fromisoformat(ack["received_at"]) <= after
    services = app.app.state.services
    (row,) = HeartbeatStore(services.catalog).latest()
    assert row.sent_at == datetime(2026, 1, 1, 10, 0, 0, 1, tzinfo=UTC)
    assert row.received_at == datetime.fromisoformat(ack["received_at"])
    assert row.counters == heartbeat()["counters"]
    assert services.outbox.pending() == 1
    services.outbox.drain(services.sink)
    (logged,) = services.sink.read("device_heartbeats")
    assert logged == {
        "device_id": "cam-1",
        "sent_at": row.sent_at,
        "counters": heartbeat()["counters"],
        "received_at": row.received_at,
        "started_at": datetime(2026, 1, 1, 6, 0, tzinfo=UTC),
        "model_version": "m1",
        "software_version": "0.1.0",
        "buffer_frames": 30,
        "buffer_bytes": 1048576,
        "buffer_max_bytes": 1073741824,
        "last_device_seq": 410,
    }


def test_a_retry_answers_duplicate_with_the_first_received_at_and_writes_nothing(
    app: Any,
) -> None:
    first = post(app, heartbeat(), app.device).json()
    outbox = app.app.state.services.outbox
    for body in (
        heartbeat(),
        heartbeat(sent_at="2026-01-01T10:00:00.000001Z"),  # the same instant in UTC
        heartbeat(counters={"frames.seen": 1}),  # same key, other content: the first stays
    ):
        r = post(app, body, app.device)
        assert r.status_code == 200, r.text
        assert r.json() == {**first, "duplicate": True}
    assert stored(app) == 1 and outbox.pending() == 1
    (row,) = HeartbeatStore(app.app.state.services.catalog).latest()
    assert row.counters["frames.seen"] == 21600
    text = app.get("/metrics").text
    assert metric(text, "curator_server_heartbeats_total", outcome="stored") == 1
    assert metric(text, "curator_server_heartbeats_total", outcome="duplicate") == 3
    received = datetime.fromisoformat(first["received_at"]).timestamp()
    gauge = "curator_server_device_last_heartbeat_timestamp_seconds"
    assert metric(text, gauge, device_id="cam-1") == pytest.approx(received)


def test_no_token_is_401_even_with_a_bad_body(app: Any) -> None:
    for body in (heartbeat(), b"{not json"):
        r = post(app, body, None)
        assert r.status_code == 401, r.text
        assert r.headers["WWW-Authenticate"] == "Bearer"
        assert r.json()["error"]["code"] == "unauthorized"
    assert post(app, heartbeat(), "cur_" + "A" * 43).status_code == 401
    assert stored(app) == 0


@pytest.mark.parametrize("who", ["labeler", "admin"])
def test_only_device_tokens_may_send_heartbeats(app: Any, who: str) -> None:
    for body in (heartbeat(), b"{not json"):  # refused before the body is read
        r = post(app, body, getattr(app, who))
        assert r.status_code == 403, r.text
        assert r.json()["error"]["code"] == "forbidden"
        assert "only a device token" in r.json()["error"]["message"]
    assert stored(app) == 0


def test_a_device_may_not_report_for_another_device(app: Any) -> None:
    r = post(app, heartbeat(device_id="cam-2"), app.device)
    assert r.status_code == 403, r.text
    assert "belongs to device 'cam-1', not 'cam-2'" in r.json()["error"]["message"]
    assert post(app, heartbeat(device_id="cam-2"), app.other_device).status_code == 200
    assert post(app, heartbeat(device_id="cam-1"), app.other_device).status_code == 403
    assert [r.device_id for r in HeartbeatStore(app.app.state.services.catalog).latest()] == [
        "cam-2"
    ]


NAN_BODY = json.dumps(heartbeat(buffer_frames=float("nan")))  # Python writes NaN as is
MALFORMED: list[tuple[str, Any, str]] = [
    ("negative counter", heartbeat(counters={"frames.seen": -1}), "body.counters.frames.seen"),
    ("float counter", heartbeat(counters={"frames.seen": 1.5}), "body.counters.frames.seen"),
    ("string counter", heartbeat(counters={"frames.seen": "3"}), "body.counters.frames.seen"),
    ("bool counter", heartbeat(counters={"frames.seen": True}), "body.counters.frames.seen"),
    ("huge counter", heartbeat(counters={"frames.seen": 2**63}), "body.counters.frames.seen"),
    ("bad counter name", heartbeat(counters={"Frames Seen": 1}), "body.counters"),
    ("too many counters", heartbeat(counters={f"c{i}": 1 for i in range(129)}), "body.counters"),
    ("NaN", NAN_BODY, "body.buffer_frames"),
    ("negative buffer", heartbeat(buffer_bytes=-5), "body.buffer_bytes"),
    ("schema version 2", heartbeat(schema_version=2), "unsupported schema version 2"),
    ("schema version text", heartbeat(schema_version="1"), "body.schema_version"),
    ("naive sent_at", heartbeat(sent_at="2026-01-01T12:00:00"), "body.sent_at"),
    ("naive started_at", heartbeat(started_at="2026-01-01T06:00:00"), "body.started_at"),
    ("unix time", heartbeat(sent_at=1767261600), "body.sent_at"),
    ("unknown field", heartbeat(battery=0.5), "body.battery"),
    ("missing field", {k: v for k, v in heartbeat().items() if k != "counters"}, "body.counters"),
    ("bad device id", heartbeat(device_id="cam 1"), "body.device_id"),
    ("not an object", [heartbeat()], "body"),
    ("not json", b"{not json", "body"),
    ("empty", b"", "body"),
]


@pytest.mark.parametrize(
    ("body", "where"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED]
)
def test_a_malformed_body_is_a_json_4xx_and_stores_nothing(app: Any, body: Any, where: str) -> None:
    r = post(app, body, app.device)
    assert r.status_code in (400, 422), r.text
    error = r.json()["error"]
    assert error["code"] == ("invalid_request" if r.status_code == 422 else "bad_request")
    assert where in error["message"], error
    assert stored(app) == 0 and app.app.state.services.outbox.pending() == 0


def test_bytes_that_are_not_text_are_422_not_a_5xx(app: Any) -> None:
    r = post(app, b"\xff\xfe{\x00", app.device)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "invalid_request"
    assert metric(app.get("/metrics").text, "curator_server_unhandled_errors_total") == 0


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_another_content_type_is_415(app: Any, content_type: str | None) -> None:
    headers = bearer(app.device)
    if content_type is not None:
        headers["Content-Type"] = content_type
    r = app.post("/v1/heartbeats", content=json.dumps(heartbeat()), headers=headers)
    assert r.status_code == 415, r.text
    assert r.json()["error"]["code"] == "unsupported_media_type"
    assert stored(app) == 0


def test_a_body_over_64_kib_is_413_before_it_is_parsed(app: Any) -> None:
    padded = json.dumps(heartbeat()) + " " * (64 * 1024)
    r = post(app, padded, app.device)
    assert r.status_code == 413, r.text
    assert r.json()["error"]["code"] == "payload_too_large"
    # the largest valid heartbeat is far below the limit
    names = {f"c{i:03d}" + "x" * 60: 2**63 - 1 for i in range(128)}
    assert post(app, heartbeat(counters=names), app.device).status_code == 200


def test_devices_lists_each_devices_newest_heartbeat_for_admins_only(app: Any) -> None:
    sends = [
        (app.device, heartbeat(sent_at="2026-01-01T10:05:00Z", buffer_frames=5)),
        (app.device, heartbeat(sent_at="2026-01-01T10:01:00Z", buffer_frames=1)),  # older, later
        (app.other_device, heartbeat(device_id="cam-2", model_version=None, counters={})),
    ]
    acks = [post(app, body, token).json() for token, body in sends]
    r = app.get("/v1/devices", headers=bearer(app.admin))
    assert r.status_code == 200, r.text
    devices = r.json()["devices"]
    assert [d["device_id"] for d in devices] == ["cam-1", "cam-2"]
    cam1, cam2 = devices
    assert datetime.fromisoformat(cam1["sent_at"]) == datetime(2026, 1, 1, 10, 5, tzinfo=UTC)
    assert cam1["received_at"] == acks[0]["received_at"] and cam1["buffer_frames"] == 5
    assert {k: cam1[k] for k in ("model_version", "software_version", "counters")} == {
        "model_version": "m1",
        "software_version": "0.1.0",
        "counters": heartbeat()["counters"],
    }
    assert (cam1["buffer_bytes"], cam1["buffer_max_bytes"], cam1["last_device_seq"]) == (
        1048576,
        1073741824,
        410,
    )
    assert datetime.fromisoformat(cam1["started_at"]) == datetime(2026, 1, 1, 6, tzinfo=UTC)
    assert cam2["model_version"] is None and cam2["counters"] == {}
    assert datetime.fromisoformat(cam2["sent_at"]) == datetime(2026, 1, 1, 10, 0, 0, 1, tzinfo=UTC)
    for token in (app.device, app.labeler):
        refused = app.get("/v1/devices", headers=bearer(token))
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    assert app.get("/v1/devices").status_code == 401


def test_devices_is_empty_before_any_heartbeat(app: Any) -> None:
    r = app.get("/v1/devices", headers=bearer(app.admin))
    assert r.status_code == 200 and r.json() == {"devices": []}


def test_the_openapi_schema_describes_both_routes(app: Any) -> None:
    paths = app.get("/openapi.json").json()["paths"]
    post_op = paths["/v1/heartbeats"]["post"]
    assert {"200", "401", "403", "413", "415", "422"} <= set(post_op["responses"])
    body = post_op["requestBody"]["content"]["application/json"]["schema"]
    model = DeviceHeartbeat.model_json_schema()
    assert set(body["properties"]) == set(model["properties"])
    assert body["required"] == model["required"]
    assert body["additionalProperties"] is False and "counters" in body["required"]
    assert {"200", "401", "403"} <= set(paths["/v1/devices"]["get"]["responses"])
