"""curator.client: fast tests through an httpx.MockTransport (the wire as the server speaks it),
and a few against a real ``curator-server serve`` process."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import numpy as np
import pytest
from testkit.images import jpeg
from testkit.models import linear_onnx
from testkit.server import ServeProcess, issue_token

from curator.client import CuratorClient
from curator.errors import ApiError, CuratorError, InvalidInputError
from curator.wire import MEDIA_TYPE, BatchUpload, FrameRecord, decode_batch, encode_batch

Handler = Callable[[httpx.Request], httpx.Response]


def _client(handler: Handler, token: str | None = "tok") -> CuratorClient:
    http = httpx.Client(transport=httpx.MockTransport(handler))
    return CuratorClient("http://curator.test/", token, client=http)


def _record(n: int, device: str = "cam-1", model: str = "lin-1") -> FrameRecord:
    return FrameRecord.from_image(
        jpeg(n),
        np.random.default_rng(n).standard_normal(16).astype(np.float32),
        device_id=device,
        device_seq=n,
        captured_at=datetime(2026, 3, 1, tzinfo=UTC),
        model_version=model,
        width=16,
        height=12,
        scores={"entropy": 0.5},
        keep_reason="uncertain",
        predicted_class=1,
        class_probabilities=[0.25, 0.25, 0.25, 0.25],
    )


def test_an_error_answer_raises_api_error_with_the_servers_code_and_body() -> None:
    body = {"error": {"code": "forbidden", "message": "not an admin token"}}
    with (
        _client(lambda r: httpx.Response(403, json=body)) as api,
        pytest.raises(ApiError) as caught,
    ):
        api.list_models()
    err = caught.value
    assert isinstance(err, CuratorError)
    assert (err.status_code, err.code, err.message) == (403, "forbidden", "not an admin token")
    assert err.detail == body
    assert (err.method, err.url) == ("GET", "/v1/models")
    assert "HTTP 403 forbidden" in str(err)


def test_a_non_json_error_is_named_by_its_status() -> None:
    with (
        _client(lambda r: httpx.Response(502, text="bad gateway")) as api,
        pytest.raises(ApiError) as caught,
    ):
        api.health()
    assert (caught.value.code, caught.value.detail) == ("http_502", "bad gateway")


def test_the_token_travels_as_a_bearer_header_and_none_sends_no_header() -> None:
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        return httpx.Response(200, json={"status": "ok"})

    with _client(handler) as api:
        api.health()
    with _client(handler, token=None) as api:
        api.health()
    assert seen == ["Bearer tok", None]


def test_upload_batch_sends_the_binary_framing_and_parses_the_answer() -> None:
    batch = BatchUpload(batch_id="b1", device_id="cam-1", frames=(_record(1), _record(2)))

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/batches"
        assert request.headers["content-type"] == MEDIA_TYPE
        got = decode_batch(request.content)
        assert got == batch
        results = [
            {"frame_id": f.frame_id, "device_seq": f.device_seq, "status": "accepted"}
            for f in got.frames
        ]
        return httpx.Response(200, json={"schema_version": 1, "batch_id": "b1", "results": results})

    with _client(handler) as api:
        answer = api.upload_batch(batch)
        encoded = api.upload_batch(encode_batch(batch))  # already encoded: sent as it is
    assert answer.count("accepted") == 2 and encoded == answer


def test_latest_model_is_none_until_one_is_promoted() -> None:
    body = {"error": {"code": "not_found", "message": "no model version is promoted yet"}}
    with _client(lambda r: httpx.Response(404, json=body)) as api:
        assert api.latest_model() is None


def test_download_model_checks_the_sha256_it_is_given() -> None:
    data = b"onnx bytes"
    with _client(lambda r: httpx.Response(200, content=data)) as api:
        assert api.download_model("v1", sha256=hashlib.sha256(data).hexdigest()) == data
        with pytest.raises(InvalidInputError, match="'v1'"):
            api.download_model("v1", sha256="0" * 64)


def test_register_model_sends_the_bytes_and_the_promotion_query() -> None:
    info = {
        "model_version": "lin-1",
        "sha256": "a" * 64,
        "size_bytes": 3,
        "created_at": "2026-03-01T00:00:00Z",
        "promoted": True,
        "download_path": "/v1/models/lin-1/file",
    }

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.content == b"abc"
        assert request.headers["content-type"] == "application/octet-stream"
        assert request.url.params["promote"] == "yes"
        assert json.loads(request.url.params["metrics"]) == {"accuracy": 0.5}
        return httpx.Response(201, json=info)

    with _client(handler) as api:
        got = api.register_model(b"abc", promote="yes", metrics={"accuracy": 0.5})
    assert got.model_version == "lin-1"


def test_export_jsonl_is_a_list_of_objects() -> None:
    lines = '{"frame_id": "a", "class_name": "x"}\n{"frame_id": "b", "class_name": "y"}\n'
    with _client(lambda r: httpx.Response(200, text=lines)) as api:
        assert [row["frame_id"] for row in api.export_labels()] == ["a", "b"]


def test_wait_for_job_polls_until_finished_or_times_out_on_the_injected_clock() -> None:
    states = iter(["queued", "running", "succeeded"])

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"job_id": "j", "status": next(states), "attempts": 1})

    now = [0.0]
    sleeps: list[float] = []

    def sleep(s: float) -> None:
        sleeps.append(s)
        now[0] += s

    with _client(handler) as api:
        job = api.wait_for_job("j", poll_s=2.0, clock=lambda: now[0], sleep=sleep)
    assert job["status"] == "succeeded" and sleeps == [2.0, 2.0]

    stuck = _client(lambda r: httpx.Response(200, json={"job_id": "j", "status": "running"}))
    with stuck, pytest.raises(TimeoutError, match="still running after 5"):
        stuck.wait_for_job("j", timeout_s=5, poll_s=2.0, clock=lambda: now[0], sleep=sleep)


# -- against a real server -----------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServeProcess, Any]]:
    root = tmp_path_factory.mktemp("client")
    data = root / "data"
    tokens = {
        "admin": issue_token(data, "admin")[0],
        "labeler": issue_token(data, "labeler")[0],
        "device": issue_token(data, "device", "cam-1")[0],
    }
    process = ServeProcess(data, root / "logs")
    process.start()
    try:
        yield process, tokens
    finally:
        process.kill()


@pytest.mark.integration
def test_the_loop_through_a_real_server(server: tuple[ServeProcess, Any]) -> None:
    process, tokens = server
    admin = CuratorClient(process.base, tokens["admin"])
    device = CuratorClient(process.base, tokens["device"])
    labeler = CuratorClient(process.base, tokens["labeler"])
    with admin, device, labeler:
        assert admin.health() == {"status": "ok"}
        assert admin.ready()["status"] == "ready"
        assert admin.whoami()["role"] == "admin"
        onnx = linear_onnx(version="lin-1")
        info = admin.register_model(onnx, promote="yes")
        assert admin.register_model(onnx, promote="yes") == info  # idempotent
        assert device.latest_model() == info
        assert device.download_model("lin-1", sha256=info.sha256) == onnx
        assert [m.model_version for m in admin.list_models()] == ["lin-1"]

        batch = BatchUpload(batch_id="b1", device_id="cam-1", frames=(_record(1), _record(2)))
        answer = device.upload_batch(batch)
        assert [r.status for r in answer.results] == ["accepted", "accepted"]

        tasks = labeler.lease_tasks(count=5)
        assert {t["frame_id"] for t in tasks} == {f.frame_id for f in batch.frames}
        labeler.release_task(tasks[1]["lease_id"])
        label = labeler.submit_label(tasks[0]["frame_id"], "class_1", lease_id=tasks[0]["lease_id"])
        assert label["class_name"] == "class_1"
        assert labeler.label_stats()["labels"]["current"] == 1
        assert [row["frame_id"] for row in labeler.export_labels()] == [tasks[0]["frame_id"]]
        assert labeler.frame_image(tasks[0]["frame_id"]) in {jpeg(1), jpeg(2)}

        asked = admin.request_fine_tune()  # no worker runs here: the job stays queued
        assert asked["started"] is True
        assert admin.job(asked["job"]["job_id"])["status"] == "queued"
        assert [j["job_id"] for j in admin.jobs()] == [asked["job"]["job_id"]]


@pytest.mark.integration
def test_refusals_from_a_real_server_raise_api_error(server: tuple[ServeProcess, Any]) -> None:
    process, tokens = server
    with (
        CuratorClient(process.base, "cur_not-a-token") as stranger,
        pytest.raises(ApiError) as caught,
    ):
        stranger.whoami()
    assert (caught.value.status_code, caught.value.code) == (401, "unauthorized")
    with CuratorClient(process.base, tokens["device"]) as device, pytest.raises(ApiError) as caught:
        device.request_fine_tune()
    assert caught.value.status_code == 403
    with CuratorClient(process.base, tokens["admin"]) as admin, pytest.raises(ApiError) as caught:
        admin.job("job_0000000000000000")
    assert (caught.value.status_code, caught.value.code) == (404, "not_found")
