"""The labeling API through the real app (in-process client, lifespan run, real stores): task
leases, labels, exports, stats, frame images, and who may call what."""

from __future__ import annotations

import json
import threading
from datetime import datetime
from typing import Any

import pytest
from testkit.frames import upload
from testkit.images import jpeg

ROUTES = [
    ("POST", "/v1/label-tasks/lease"),
    ("POST", "/v1/label-tasks/lease_x/renew"),
    ("POST", "/v1/label-tasks/lease_x/release"),
    ("POST", "/v1/labels"),
    ("GET", "/v1/labels/export"),
    ("GET", "/v1/labels/stats"),
    ("GET", f"/v1/frames/{'0' * 64}/image"),
]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def app(make_client: Any) -> Any:
    with make_client() as c:
        services = c.app.state.services
        services.drainer.stop()  # the outbox keeps what the tests look at
        tokens = services.tokens
        c.alice = tokens.create("labeler").token
        c.bob = tokens.create("labeler").token
        c.admin = tokens.create("admin").token
        c.device = tokens.create("device", "cam-1").token
        c.frames = upload(services, range(1, 13))
        yield c


def lease(app: Any, token: str, **body: Any) -> Any:
    return app.post("/v1/label-tasks/lease", json=body, headers=bearer(token))


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_every_route_needs_a_labeler_or_admin_token(app: Any, method: str, path: str) -> None:
    r = app.request(method, path)
    assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Bearer"
    assert r.json()["error"]["code"] == "unauthorized"
    r = app.request(method, path, headers=bearer(app.device))
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    r = app.request(method, path, headers=bearer("cur_" + "x" * 43))
    assert r.status_code == 401


def test_a_lease_returns_tasks_whose_images_and_guesses_are_there(app: Any) -> None:
    r = lease(app, app.alice, count=3, lease_s=120)
    assert r.status_code == 200, r.text
    tasks = r.json()["tasks"]
    assert len(tasks) == 3 and len({t["frame_id"] for t in tasks}) == 3
    t = tasks[0]
    assert set(t) == {
        "lease_id", "frame_id", "image_url", "model_version", "class_names", "predicted_class",
        "predicted_index", "confidence", "strategy", "leased_at", "expires_at",
    }  # fmt: skip
    assert t["class_names"] == ["0", "1", "2"] and t["predicted_class"] == "1"
    assert t["predicted_index"] == 1 and 0.4 <= t["confidence"] < 0.5
    assert t["strategy"] == "uncertainty_diversity" and t["model_version"] == "m1"
    span = datetime.fromisoformat(t["expires_at"]) - datetime.fromisoformat(t["leased_at"])
    assert span.total_seconds() == 120
    image = app.get(t["image_url"], headers=bearer(app.bob))
    assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
    assert image.content == jpeg(app.frames.index(t["frame_id"]) + 1)
    missing = app.get(f"/v1/frames/{'a' * 64}/image", headers=bearer(app.admin))
    assert missing.status_code == 404
    bare = app.post("/v1/label-tasks/lease", headers=bearer(app.alice))  # no body: defaults
    assert bare.status_code == 200 and len(bare.json()["tasks"]) == 9  # count 10, 9 left
    assert lease(app, app.bob).json()["tasks"] == []


@pytest.mark.parametrize("body", [{"count": 0}, {"count": 101}, {"lease_s": 0}, {"count": "x"}])
def test_bad_lease_bodies_are_422(app: Any, body: dict[str, Any]) -> None:
    r = lease(app, app.alice, **body)
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"


def test_renew_and_release_only_by_the_holder_or_an_admin(app: Any) -> None:
    (t,) = lease(app, app.alice, count=1, lease_s=60).json()["tasks"]
    url = f"/v1/label-tasks/{t['lease_id']}"
    r = app.post(f"{url}/renew", json={"lease_s": 600}, headers=bearer(app.alice))
    assert r.status_code == 200, r.text
    assert datetime.fromisoformat(r.json()["expires_at"]) > datetime.fromisoformat(t["expires_at"])
    assert r.json()["release_reason"] is None
    r = app.post(f"{url}/release", headers=bearer(app.bob))
    assert r.status_code == 403 and "held by another" in r.json()["error"]["message"]
    assert app.post(f"{url}/renew", headers=bearer(app.bob)).status_code == 403
    assert app.post(f"{url}/renew", headers=bearer(app.admin)).status_code == 200
    r = app.post(f"{url}/release", headers=bearer(app.alice))
    assert r.status_code == 200 and r.json()["release_reason"] == "released"
    r = app.post(f"{url}/release", headers=bearer(app.alice))
    assert r.status_code == 409 and r.json()["error"]["code"] == "lease_conflict"
    assert (
        app.post("/v1/label-tasks/lease_nope/renew", headers=bearer(app.alice)).status_code == 404
    )
    assert t["frame_id"] in {x["frame_id"] for x in lease(app, app.bob, count=12).json()["tasks"]}


def test_labels_are_validated_chained_as_corrections_and_logged(app: Any) -> None:
    (t,) = lease(app, app.alice, count=1).json()["tasks"]
    body = {"frame_id": t["frame_id"], "class_name": "cat", "lease_id": t["lease_id"]}
    r = app.post("/v1/labels", json=body, headers=bearer(app.alice))
    assert r.status_code == 422
    assert "'0', '1', '2'" in r.json()["error"]["message"]
    assert r.json()["error"]["message"].startswith("body.class_name")
    r = app.post("/v1/labels", json={**body, "class_name": "2"}, headers=bearer(app.alice))
    assert r.status_code == 201, r.text
    first = r.json()
    assert first["supersedes"] is None and first["lease_id"] == t["lease_id"]
    assert first["class_name"] == "2" and first["model_version"] == "m1"
    r = app.post(f"/v1/label-tasks/{t['lease_id']}/renew", headers=bearer(app.alice))
    assert r.status_code == 409  # labeling ended the lease
    r = app.post(
        "/v1/labels", json={"frame_id": t["frame_id"], "class_name": "0"}, headers=bearer(app.bob)
    )
    second = r.json()
    assert r.status_code == 201 and second["supersedes"] == first["label_id"]
    assert second["labeler"] != first["labeler"]
    unknown = {"frame_id": "f" * 64, "class_name": "0"}
    assert app.post("/v1/labels", json=unknown, headers=bearer(app.bob)).status_code == 404
    no_class = app.post("/v1/labels", json={"frame_id": "x"}, headers=bearer(app.bob))
    assert no_class.status_code == 422
    rows = app.app.state.services.catalog.db.connection.execute(
        "SELECT row FROM warehouse_outbox WHERE table_name = 'labels' ORDER BY id"
    )
    logged = [json.loads(x[0]) for x in rows]
    assert [x["label_id"] for x in logged] == [first["label_id"], second["label_id"]]
    assert logged[1]["supersedes"] == first["label_id"] and logged[1]["class_name"] == "0"


def test_exports_parse_and_stats_count(app: Any) -> None:
    frames = app.frames
    for fid, cls, who in [(frames[0], "0", app.alice), (frames[1], "1", app.bob),
                          (frames[0], "2", app.bob)]:  # fmt: skip
        body = {"frame_id": fid, "class_name": cls}
        assert app.post("/v1/labels", json=body, headers=bearer(who)).status_code == 201
    r = app.get("/v1/labels/export", params={"format": "jsonl"}, headers=bearer(app.alice))
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in r.text.splitlines()]
    assert [(x["frame_id"], x["class_name"]) for x in lines] == [(frames[0], "2"), (frames[1], "1")]
    coco = app.get("/v1/labels/export?format=coco", headers=bearer(app.admin)).json()
    assert {"images", "categories", "annotations"} <= set(coco) and len(coco["annotations"]) == 2
    ls = app.get("/v1/labels/export?format=labelstudio", headers=bearer(app.alice)).json()
    assert isinstance(ls, list) and ls[0]["data"]["image"].endswith(f"/v1/frames/{frames[0]}/image")
    assert ls[0]["data"]["image"].startswith("http")
    bad = app.get("/v1/labels/export?format=csv", headers=bearer(app.alice))
    assert bad.status_code == 422
    lease(app, app.alice, count=4)
    stats = app.get("/v1/labels/stats", headers=bearer(app.bob)).json()
    assert stats["frames"] == {"accepted": 12, "labeled": 2, "unlabeled": 10, "leased": 4}
    assert stats["labels"] == {"total": 3, "current": 2, "corrections": 1}
    assert stats["per_class"] == {"1": 1, "2": 1} and sorted(stats["per_labeler"].values()) == [
        1,
        2,
    ]


def test_two_labelers_pulling_concurrently_through_the_app_never_share_a_frame(app: Any) -> None:
    more = upload(app.app.state.services, range(13, 41))
    got: dict[str, list[str]] = {app.alice: [], app.bob: []}
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def pull(token: str) -> None:
        try:
            for _ in range(12):
                barrier.wait(timeout=10)
                r = lease(app, token, count=2, lease_s=600)
                assert r.status_code == 200, r.text
                got[token] += [t["frame_id"] for t in r.json()["tasks"]]
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=pull, args=(token,)) for token in got]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    a, b = got[app.alice], got[app.bob]
    assert set(a).isdisjoint(b) and len(set(a)) == len(a) and len(set(b)) == len(b)
    assert sorted(a + b) == sorted(app.frames + more)  # 48 tries for 40 frames


@pytest.mark.parametrize("cooldown_s", [900.0, 0.0])
def test_a_skipped_frame_waits_out_the_configured_cool_down_for_its_labeler_only(
    make_client: Any, settings: Any, cooldown_s: float
) -> None:
    with make_client(settings.model_copy(update={"label_skip_cooldown_s": cooldown_s})) as c:
        tokens = c.app.state.services.tokens
        alice, bob = tokens.create("labeler").token, tokens.create("labeler").token
        upload(c.app.state.services, range(1, 2))  # one frame: the strategy can only pick it
        (task,) = lease(c, alice, count=1).json()["tasks"]
        release = c.post(f"/v1/label-tasks/{task['lease_id']}/release", headers=bearer(alice))
        assert release.status_code == 200 and release.json()["release_reason"] == "released"
        again = [t["frame_id"] for t in lease(c, alice, count=1).json()["tasks"]]
        assert again == ([] if cooldown_s else [task["frame_id"]])
        if cooldown_s:  # a colleague gets it at once
            assert [t["frame_id"] for t in lease(c, bob, count=1).json()["tasks"]] == [
                task["frame_id"]
            ]
