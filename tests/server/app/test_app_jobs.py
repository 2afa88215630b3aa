"""Fine-tuning jobs over HTTP: labels start a job every N, an admin asks for one, the same
snapshot gives the same job, and only admins see them."""

from __future__ import annotations

from typing import Any

import pytest
from testkit.frames import upload

from server.settings import ServerSettings


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def app(make_client: Any, settings: ServerSettings) -> Any:
    every_three = settings.model_copy(update={"train_every_labels": 3})
    with make_client(every_three) as c:
        services = c.app.state.services
        services.drainer.stop()
        c.labeler = services.tokens.create("labeler").token
        c.admin = services.tokens.create("admin").token
        c.device = services.tokens.create("device", "cam-1").token
        c.frames = upload(services, range(1, 9))
        yield c


def label(app: Any, frame_id: str) -> None:
    answer = app.post(
        "/v1/labels", json={"frame_id": frame_id, "class_name": "1"}, headers=bearer(app.labeler)
    )
    assert answer.status_code == 201, answer.text


def jobs(app: Any) -> list[dict[str, Any]]:
    answer = app.get("/v1/jobs", headers=bearer(app.admin))
    assert answer.status_code == 200
    return list(answer.json())


def test_every_third_label_starts_one_job_per_snapshot(app: Any) -> None:
    label(app, app.frames[0])
    label(app, app.frames[1])
    assert jobs(app) == []
    label(app, app.frames[2])
    (job,) = jobs(app)
    assert job["status"] == "queued" and job["label_count"] == 3 and job["requested_by"] is None
    assert app.get(f"/v1/jobs/{job['job_id']}", headers=bearer(app.admin)).json() == job
    label(app, app.frames[3])
    label(app, app.frames[4])
    assert len(jobs(app)) == 1
    label(app, app.frames[5])
    assert [j["label_count"] for j in jobs(app)] == [6, 3]


def test_an_admin_request_starts_a_job_and_a_repeat_returns_it(app: Any) -> None:
    empty = app.post("/v1/jobs/fine-tune", headers=bearer(app.admin))
    assert empty.status_code == 200 and not empty.json()["started"]
    assert empty.json()["job"] is None
    label(app, app.frames[0])
    first = app.post("/v1/jobs/fine-tune", headers=bearer(app.admin))
    assert first.status_code == 202 and first.json()["started"]
    again = app.post("/v1/jobs/fine-tune", headers=bearer(app.admin))
    assert again.status_code == 200 and not again.json()["started"]
    assert again.json()["job"]["job_id"] == first.json()["job"]["job_id"]
    assert first.json()["job"]["snapshot_key"] == jobs(app)[0]["snapshot_key"]


def test_jobs_record_the_servers_training_recipe(
    make_client: Any, settings: ServerSettings
) -> None:
    recipe = settings.model_copy(
        update={"train_every_labels": 2, "train_epochs": 7, "train_min_samples": 1234}
    )
    with make_client(recipe) as c:
        services = c.app.state.services
        services.drainer.stop()
        c.labeler = services.tokens.create("labeler").token
        c.admin = services.tokens.create("admin").token
        c.frames = upload(services, range(1, 5))
        label(c, c.frames[0])
        requested = c.post("/v1/jobs/fine-tune", headers=bearer(c.admin)).json()["job"]
        label(c, c.frames[1])
        label(c, c.frames[2])  # two new labels since the requested job: the policy's job
        by_policy, by_admin = jobs(c)
    assert by_admin["job_id"] == requested["job_id"] and by_policy["requested_by"] is None
    for job in (by_admin, by_policy):
        assert job["params"] == {"epochs": 7, "min_samples": 1234}


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/v1/jobs/fine-tune"), ("GET", "/v1/jobs"), ("GET", "/v1/jobs/x")],
)
def test_jobs_are_for_admins(app: Any, method: str, path: str) -> None:
    assert app.request(method, path).status_code == 401
    for token in (app.labeler, app.device):
        assert app.request(method, path, headers=bearer(token)).status_code == 403
    if path == "/v1/jobs/x":
        assert app.request(method, path, headers=bearer(app.admin)).status_code == 404
