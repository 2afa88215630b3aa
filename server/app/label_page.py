"""The labeling page: ``GET /label`` serves one self-contained HTML page (inline CSS and script,
no external assets) that labels frames through the labeling API (docs/labeling.md).

The page itself needs no token; it asks for a ``labeler`` token (or takes ``#token=...`` from the
URL fragment, which browsers never send to servers), keeps it in the tab's ``sessionStorage`` and
sends it as ``Authorization: Bearer`` on every API call. Images come through ``fetch`` as blob
URLs, since an ``<img>`` cannot send that header. The Content-Security-Policy allows only this
page's own inline script and style (by hash), requests to this server and ``blob:`` images.
"""

from __future__ import annotations

import base64
import hashlib
import re
from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

__all__ = ["LABEL_PAGE", "router", "security_headers"]

router = APIRouter(tags=["labeling"])

LABEL_PAGE: str = resources.files("server.app").joinpath("static/label.html").read_text("utf-8")
"""The page's HTML (server/app/static/label.html)."""


def _hashes(html: str, tag: str) -> str:
    """CSP sources (``'sha256-...'``) of every inline ``<tag>`` element's text in ``html``."""
    bodies = re.findall(rf"<{tag}>(.*?)</{tag}>", html, flags=re.DOTALL)
    digests = (base64.b64encode(hashlib.sha256(b.encode()).digest()).decode() for b in bodies)
    return " ".join(f"'sha256-{d}'" for d in digests)


def security_headers(html: str) -> dict[str, str]:
    """The response headers of a page: a CSP allowing only ``html``'s own inline script and
    style, fetches to this origin and ``blob:`` images; no framing, sniffing or referrer."""
    policy = "; ".join(
        (
            "default-src 'none'",
            f"script-src {_hashes(html, 'script')}",
            f"style-src {_hashes(html, 'style')}",
            "img-src blob:",
            "connect-src 'self'",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        )
    )
    return {
        "Content-Security-Policy": policy,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-cache",
    }


_HEADERS = security_headers(LABEL_PAGE)


@router.get(
    "/label",
    response_class=HTMLResponse,
    include_in_schema=False,
    summary="The labeling page",
    description="An HTML page for labelers; it calls the `/v1/label-tasks` and `/v1/labels` API.",
)
def label_page() -> HTMLResponse:
    return HTMLResponse(LABEL_PAGE, headers=_HEADERS)
