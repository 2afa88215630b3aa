"""The model registry routes through the real app (in-process client): upload, the gate,
latest with ETag/304, the file download, promotion, auth, errors and the warehouse row."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import onnx
import pytest
from testkit.models import linear_onnx

from curator.inference import OnnxModel
from curator.wire import ModelInfo

ONNX = "application/octet-stream"
M1 = linear_onnx(version="m1", seed=1)
M2 = linear_onnx(version="m2", seed=2)


def bearer(token: str | None) -> dict[str, str]:
    return {} if token is None else {"Authorization": f"Bearer {token}"}


@pytest.fixture
def app(make_client: Any) -> Any:
    with make_client() as c:
        tokens = c.app.state.services.tokens
        c.device = tokens.create("device", "cam-1").token
        c.labeler = tokens.create("labeler").token
        c.admin = tokens.create("admin").token
        c.app.state.services.drainer.stop()  # the outbox keeps what the tests look at
        yield c


def upload(client: Any, data: bytes, token: str | None = "admin", **params: Any) -> Any:
    if "metrics" in params and not isinstance(params["metrics"], str):
        params["metrics"] = json.dumps(params["metrics"])
    headers = {"Content-Type": ONNX, **bearer(getattr(client, token) if token else None)}
    return client.post("/v1/models", content=data, params=params, headers=headers)


def test_upload_then_latest_then_download(app: Any) -> None:
    r = upload(app, M1, metrics={"accuracy": 0.8}, snapshot_key="snap-1")
    assert r.status_code == 201, r.text
    info = ModelInfo.model_validate_json(r.text)
    sha = hashlib.sha256(M1).hexdigest()
    assert info.model_version == "m1" and info.sha256 == sha and info.size_bytes == len(M1)
    assert info.promoted and info.metrics == {"accuracy": 0.8}
    assert "no current model" in r.headers["X-Promotion-Reason"]

    for token in (app.device, app.labeler, app.admin):
        latest = app.get("/v1/models/latest", headers=bearer(token))
        assert latest.status_code == 200, latest.text
        assert latest.headers["ETag"] == f'"{sha}"'
        assert ModelInfo.model_validate_json(latest.text) == info

        f = app.get(info.download_path, headers=bearer(token))
        assert f.status_code == 200
        assert f.headers["content-type"] == ONNX
        assert f.headers["ETag"] == f'"{sha}"'
        assert int(f.headers["content-length"]) == len(M1)
        assert f.content == M1 and hashlib.sha256(f.content).hexdigest() == sha
    assert OnnxModel(f.content).model_version == "m1"


def test_if_none_match_answers_304_until_the_promoted_model_changes(app: Any) -> None:
    upload(app, M1, metrics={"accuracy": 0.8})
    etag = app.get("/v1/models/latest", headers=bearer(app.device)).headers["ETag"]
    for given in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        r = app.get("/v1/models/latest", headers={**bearer(app.device), "If-None-Match": given})
        assert r.status_code == 304, given
        assert r.content == b"" and r.headers["ETag"] == etag
    r = app.get("/v1/models/m1/file", headers={**bearer(app.device), "If-None-Match": etag})
    assert r.status_code == 304 and r.content == b""
    r = app.get("/v1/models/latest", headers={**bearer(app.device), "If-None-Match": '"x"'})
    assert r.status_code == 200

    assert upload(app, M2, metrics={"accuracy": 0.9}).json()["promoted"]
    r = app.get("/v1/models/latest", headers={**bearer(app.device), "If-None-Match": etag})
    assert r.status_code == 200
    assert r.json()["model_version"] == "m2"
    assert r.headers["ETag"] == f'"{hashlib.sha256(M2).hexdigest()}"'


def test_no_promoted_model_is_a_404(app: Any) -> None:
    r = app.get("/v1/models/latest", headers=bearer(app.device))
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"
    upload(app, M1, promote="no")
    r = app.get("/v1/models/latest", headers=bearer(app.device))
    assert r.status_code == 404
    assert app.get("/v1/models/nope/file", headers=bearer(app.device)).status_code == 404


def test_the_gate_keeps_a_worse_candidate_off_the_devices(app: Any) -> None:
    upload(app, M1, metrics={"accuracy": 0.8}, snapshot_key="s1")
    r = upload(app, M2, metrics={"accuracy": 0.3}, snapshot_key="s2", parent_version="m1")
    assert r.status_code == 201
    assert r.json()["promoted"] is False
    assert r.headers["X-Promotion-Reason"].startswith("not promoted: worse by 0.5")
    assert app.get("/v1/models/latest", headers=bearer(app.device)).json()["model_version"] == "m1"
    # a wider margin lets the next one through; gate_metric names the metric compared
    m3 = linear_onnx(version="m3", seed=3)
    r = upload(app, m3, metrics={"accuracy": 0.7}, gate_margin=0.2)
    assert r.json()["promoted"] is True
    m4 = linear_onnx(version="m4", seed=4)
    assert upload(app, m4, metrics={"accuracy": 0.1}, gate_metric="f1").json()["promoted"] is False


def test_promote_yes_no_and_the_promote_route(app: Any) -> None:
    assert upload(app, M1, promote="yes").json()["promoted"] is True
    r = upload(app, M2, metrics={"accuracy": 1.0}, promote="no")
    assert r.status_code == 201 and r.json()["promoted"] is False
    assert r.headers["X-Promotion-Reason"] == "not promoted: promote=no"
    r = app.post("/v1/models/m2/promote", headers=bearer(app.admin))
    assert r.status_code == 200 and r.json()["promoted"] is True
    assert app.get("/v1/models/latest", headers=bearer(app.device)).json()["model_version"] == "m2"
    r = app.post("/v1/models/m2/demote", headers=bearer(app.admin))
    assert r.status_code == 200 and r.json()["promoted"] is False
    assert app.get("/v1/models/latest", headers=bearer(app.device)).json()["model_version"] == "m1"
    assert app.post("/v1/models/nope/promote", headers=bearer(app.admin)).status_code == 404
    listed = app.get("/v1/models", headers=bearer(app.admin))
    assert [m["model_version"] for m in listed.json()] == ["m1", "m2"]


def test_a_re_upload_is_idempotent_and_a_conflict_is_409(app: Any) -> None:
    first = upload(app, M1, snapshot_key="s1", metrics={"accuracy": 0.5})
    again = upload(app, M1, snapshot_key="s1", metrics={"accuracy": 0.5})
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    r = upload(app, linear_onnx(version="m1", seed=42))
    assert r.status_code == 409
    assert "registered with other bytes" in r.json()["error"]["message"]
    r = upload(app, M2, snapshot_key="s1")
    assert r.status_code == 409
    assert "one model version per snapshot" in r.json()["error"]["message"]
    assert len(app.get("/v1/models", headers=bearer(app.admin)).json()) == 1


def _renamed_output(data: bytes) -> bytes:
    model = onnx.load_from_string(data)
    for node in model.graph.node:
        node.output[:] = ["feat" if n == "embedding" else n for n in node.output]
    for output in model.graph.output:
        if output.name == "embedding":
            output.name = "feat"
    return bytes(model.SerializeToString())


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"definitely not onnx", "not a valid ONNX model"),
        (b"", "empty"),
        (_renamed_output(linear_onnx(version="bad")), "embedding"),
    ],
)
def test_contract_breaking_bytes_are_422_and_store_nothing(
    app: Any, body: bytes, match: str
) -> None:
    r = upload(app, body)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "model_contract_error"
    assert match in r.json()["error"]["message"]
    assert app.get("/v1/models", headers=bearer(app.admin)).json() == []


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"metrics": "not json"}, 422),
        ({"metrics": "[1, 2]"}, 422),
        ({"metrics": '{"accuracy": "high"}'}, 422),
        ({"metrics": '{"accuracy": NaN}'}, 422),
        ({"promote": "maybe"}, 422),
        ({"gate_margin": "-1"}, 422),
        ({"parent_version": "m1"}, 422),  # its own parent
    ],
)
def test_malformed_query_values_are_422(app: Any, params: dict[str, str], status: int) -> None:
    r = upload(app, M1, **params)
    assert r.status_code == status, r.text
    assert r.json()["error"]["message"]
    assert app.get("/v1/models", headers=bearer(app.admin)).json() == []


def test_the_body_must_be_octet_stream(app: Any) -> None:
    r = app.post(
        "/v1/models",
        content=M1,
        headers={**bearer(app.admin), "Content-Type": "application/json"},
    )
    assert r.status_code == 415


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/models/latest"),
        ("GET", "/v1/models/m1/file"),
        ("GET", "/v1/models"),
        ("POST", "/v1/models"),
        ("POST", "/v1/models/m1/promote"),
        ("POST", "/v1/models/m1/demote"),
    ],
)
def test_auth(app: Any, method: str, path: str) -> None:
    upload(app, M1)
    for token in (None, "cur_" + "A" * 43):
        r = app.request(method, path, headers={**bearer(token), "Content-Type": ONNX})
        assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Bearer"
    admin_only = path in ("/v1/models",) or path.endswith(("promote", "demote"))
    for token in (app.device, app.labeler):
        r = app.request(method, path, headers={**bearer(token), "Content-Type": ONNX}, content=M2)
        assert (r.status_code == 403) is admin_only, (token, r.status_code, r.text)
    assert len(app.get("/v1/models", headers=bearer(app.admin)).json()) == 1


def test_registration_and_promotion_reach_the_warehouse(app: Any) -> None:
    services = app.app.state.services
    before = services.outbox.pending()
    info = ModelInfo.model_validate_json(upload(app, M1, metrics={"accuracy": 0.8}).text)
    assert services.outbox.pending() == before + 2  # registered, then promoted (one transaction)
    services.outbox.drain(services.sink)
    (row,) = services.sink.read("model_versions")
    assert row == {
        "model_version": "m1",
        "sha256": info.sha256,
        "parent_version": None,
        "snapshot_key": None,
        "metrics": {"accuracy": 0.8},
        "promoted": True,
        "created_at": info.created_at,
    }


def test_every_route_is_documented(app: Any) -> None:
    paths = app.app.openapi()["paths"]
    ops = [
        paths["/v1/models/latest"]["get"],
        paths["/v1/models/{model_version}/file"]["get"],
        paths["/v1/models"]["get"],
        paths["/v1/models"]["post"],
        paths["/v1/models/{model_version}/promote"]["post"],
        paths["/v1/models/{model_version}/demote"]["post"],
    ]
    for op in ops:
        assert op["summary"] and op["description"]
    assert "application/octet-stream" in paths["/v1/models"]["post"]["requestBody"]["content"]
