"""``GET /label``: the labeling page is served without a token, self-contained, and calls the
labeling API; its CSP admits exactly its own inline script and style."""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any

from server.app.label_page import LABEL_PAGE, security_headers


def _csp(response: Any) -> dict[str, list[str]]:
    directives = [d.split() for d in response.headers["content-security-policy"].split(";")]
    return {d[0]: d[1:] for d in directives if d}


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def test_label_page_is_html_without_a_token(client: Any) -> None:
    response = client.get("/label")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.text == LABEL_PAGE
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"


def test_label_page_calls_the_labeling_api(client: Any) -> None:
    page = client.get("/label").text
    for path in ("/v1/label-tasks/lease", "/v1/labels", "/v1/label-tasks/", "/release"):
        assert path in page, path
    assert "sessionStorage" in page and "Authorization" in page and "Bearer " in page
    assert "createObjectURL" in page  # images through fetch(), since <img> sends no header
    assert "image_url" in page and "predicted_class" in page and "confidence" in page


def test_label_page_loads_nothing_from_elsewhere(client: Any) -> None:
    page = client.get("/label").text
    assert not re.search(r"https?://", page), "no external URL"
    assert not re.search(r"<(script|link|img|iframe)[^>]*\b(src|href)=", page)
    assert "innerHTML" not in page  # names and classes from the API go in as text only


def test_label_page_csp_admits_exactly_its_inline_script_and_style(client: Any) -> None:
    response = client.get("/label")
    page = response.text
    csp = _csp(response)
    (script,) = re.findall(r"<script>(.*?)</script>", page, flags=re.DOTALL)
    (style,) = re.findall(r"<style>(.*?)</style>", page, flags=re.DOTALL)
    assert csp["script-src"] == [_sha256(script)]
    assert csp["style-src"] == [_sha256(style)]
    assert csp["default-src"] == ["'none'"]
    assert csp["connect-src"] == ["'self'"]
    assert csp["img-src"] == ["blob:"]
    assert csp["frame-ancestors"] == ["'none'"]


def test_security_headers_hash_what_they_are_given() -> None:
    html = "<style>a{}</style><script>x()</script><script>y()</script>"
    csp = security_headers(html)["Content-Security-Policy"]
    assert f"script-src {_sha256('x()')} {_sha256('y()')};" in csp
    assert f"style-src {_sha256('a{}')};" in csp
    assert _sha256("z()") not in csp


def test_label_page_is_not_part_of_the_api_schema(client: Any) -> None:
    assert "/label" not in client.get("/openapi.json").json()["paths"]


def test_label_page_answers_only_get(client: Any) -> None:
    assert client.post("/label").status_code == 405
