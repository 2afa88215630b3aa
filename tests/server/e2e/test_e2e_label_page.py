"""End to end: the labeling page in a real headless browser (Debian ``chromium``, driven by
Playwright) against a real ``python -m server serve``.

A device uploads frames scored by a registered 3-class model through the HTTP API; a labeler
opens ``/label``, is refused with a wrong token, enters the right one, labels three frames with
the number keys and skips a fourth with ``s``. The oracle is the catalog file itself: exactly
three labels, each the class name the pressed key means for the frame that was on screen, by
the labeler's token, and the skipped frame's lease released. A second tab opened with the
token in the URL fragment starts labeling without the form.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from testkit.images import jpeg
from testkit.models import linear_onnx
from testkit.server import ServeProcess, issue_token

from curator.wire import MEDIA_TYPE, BatchUpload, FrameRecord, encode_batch

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
MODEL = "lab-1"
CLASSES = ("class_0", "class_1", "class_2")  # linear_onnx(classes=3)'s names
DIM = 16
N_FRAMES = 6
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
TIMEOUT_MS = 10_000


def planned_frames() -> list[tuple[FrameRecord, int]]:
    """Frames of pairwise orthogonal embeddings (no duplicates), each with the class the
    model guessed."""
    rng = np.random.default_rng(5)
    frames = []
    for i in range(N_FRAMES):
        probs = rng.dirichlet(np.ones(len(CLASSES))).astype(np.float32)
        record = FrameRecord.from_image(
            jpeg(9000 + i, size=(64, 48)),
            np.eye(DIM, dtype=np.float32)[i],
            device_id="cam-01", device_seq=i + 1, captured_at=T0, model_version=MODEL,
            width=64, height=48, scores={"entropy": 0.5}, keep_reason="uncertain",
            predicted_class=int(np.argmax(probs)), class_probabilities=probs,
        )  # fmt: skip
        frames.append((record, int(np.argmax(probs))))
    return frames


@pytest.fixture
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium is not installed at /usr/bin/chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


def read_catalog(data_dir: Path, sql: str) -> list[tuple[Any, ...]]:
    uri = f"file:{data_dir / 'catalog.sqlite'}?mode=ro"
    conn = sqlite3.connect(uri, uri=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_label_page_labels_three_frames_with_the_keyboard(
    tmp_path: Path, browser: Any, serve: Any
) -> None:
    data_dir = tmp_path / "data"
    admin, _ = issue_token(data_dir, "admin")  # alone: it creates the catalog
    with ThreadPoolExecutor(max_workers=2) as pool:
        issued = pool.submit(issue_token, data_dir, "device", "cam-01")
        labeler, labeler_id = issue_token(data_dir, "labeler")
        device, _ = issued.result()
    server: ServeProcess = serve()
    server.start()

    registered = httpx.post(
        f"{server.base}/v1/models",
        params={"promote": "yes"},
        content=linear_onnx(version=MODEL, classes=len(CLASSES), dim=DIM),
        headers={"Authorization": f"Bearer {admin}", "Content-Type": "application/octet-stream"},
        timeout=30,
    )
    assert registered.status_code == 201, registered.text
    frames = planned_frames()
    body = encode_batch(
        BatchUpload(batch_id="b1", device_id="cam-01", frames=tuple(r for r, _ in frames))
    )
    answer = httpx.post(
        f"{server.base}/v1/batches",
        content=body,
        headers={"Authorization": f"Bearer {device}", "Content-Type": MEDIA_TYPE},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    assert [r["status"] for r in answer.json()["results"]] == ["accepted"] * N_FRAMES
    guessed = {r.frame_id: CLASSES[c] for r, c in frames}

    page = browser.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))

    def on_console(message: Any) -> None:
        if message.type == "error":
            problems.append(f"console: {message.text}")

    page.on("console", on_console)
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(f"{server.base}/label")

    page.fill("#token", "cur_not-a-token")  # refused: the page asks again
    page.click("#login button[type=submit]")
    page.wait_for_selector("#status.error:has-text('401')")
    assert page.is_visible("#login") and not page.is_visible("#work")
    problems.clear()  # the browser logs the refused request itself

    page.fill("#token", labeler)
    page.click("#login button[type=submit]")
    pressed: dict[str, str] = {}
    for n, key in enumerate(("1", "2", "3"), start=1):
        page.wait_for_selector("#work[data-state=ready]")
        frame_id = page.get_attribute("#frame", "data-frame-id")
        assert frame_id in guessed and frame_id not in pressed
        assert page.evaluate("document.getElementById('frame').naturalWidth") == 64
        assert guessed[frame_id] in page.inner_text("#guess")  # the model's guess is shown
        buttons = page.locator("#classes button")
        assert buttons.all_inner_texts() == [f"{i + 1} {c}" for i, c in enumerate(CLASSES)]
        page.keyboard.press(key)
        page.wait_for_selector(f"#counter:text-is('{n}')")
        pressed[frame_id] = CLASSES[int(key) - 1]
    page.wait_for_selector("#work[data-state=ready]")
    skipped = page.get_attribute("#frame", "data-frame-id")
    assert skipped in guessed and skipped not in pressed
    page.keyboard.press("s")
    page.wait_for_selector("#status:has-text('Skipped')")
    assert page.inner_text("#counter") == "3"
    assert not problems, problems

    # a link with the token in its fragment (never sent to the server) starts at once
    second = browser.new_page()
    second.set_default_timeout(TIMEOUT_MS)
    second.goto(f"{server.base}/label#token={labeler}")
    # the first tab may hold every frame left (its next lease can take the skipped one back)
    second.wait_for_selector("#work[data-state=ready], #work[data-state=empty]")
    assert second.url == f"{server.base}/label"  # the token left the address bar
    assert not second.is_visible("#login") and "error" not in (
        second.get_attribute("#status", "class") or ""
    )
    assert f"token={labeler}" not in server.log_text

    labels = read_catalog(data_dir, "SELECT frame_id, class_name, labeler, lease_id FROM labels")
    assert {f: c for f, c, _, _ in labels} == pressed and len(labels) == 3
    assert {who for _, _, who, _ in labels} == {labeler_id}
    assert all(lease is not None for *_, lease in labels)
    leases = read_catalog(
        data_dir,
        "SELECT holder, release_reason FROM label_leases"
        f" WHERE frame_id = '{skipped}' ORDER BY leased_at",
    )
    # released by the skip (the page's next lease may hand the frame back: it is free again)
    assert leases[0] == (labeler_id, "released"), leases
