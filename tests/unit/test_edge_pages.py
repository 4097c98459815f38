"""The edge's console pages: their static files need no token and carry the page policy;
every other path keeps the bearer check and the JSON services' ``default-src 'none'``."""

from __future__ import annotations

import logging

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.testclient import TestClient
from sharing_guard.edge.asgi import PAGE_CSP, SECURITY_HEADERS, Edge, EdgePolicy, UnauthorizedError


def _authenticate(header: str | None) -> str:
    if header != "Bearer right":
        raise UnauthorizedError("missing bearer token", "Bearer")
    return "someone"


def _client() -> TestClient:
    app = FastAPI()

    @app.get("/console/index.html")
    def page() -> HTMLResponse:
        return HTMLResponse("<!doctype html><title>console</title>")

    @app.get("/data")
    def data() -> dict[str, int]:
        return {"n": 1}

    @app.get("/consoleish")
    def lookalike() -> dict[str, int]:
        return {"n": 2}

    app.add_middleware(
        Edge,
        policy=EdgePolicy(
            max_body_bytes=1024,
            authenticate=_authenticate,
            public_paths=frozenset(),
            logger=logging.getLogger("test.edge.pages"),
            pages=("/console/",),
        ),
    )
    return TestClient(app)


def test_a_page_needs_no_token_and_carries_the_page_policy() -> None:
    response = _client().get("/console/index.html")
    assert response.status_code == 200
    assert response.headers["Content-Security-Policy"] == PAGE_CSP
    assert "script-src 'self'" in PAGE_CSP
    assert "unsafe-inline" not in PAGE_CSP
    assert "frame-ancestors 'none'" in PAGE_CSP
    for name in ("X-Frame-Options", "X-Content-Type-Options", "Referrer-Policy"):
        assert response.headers[name] == SECURITY_HEADERS[name]


def test_data_stays_behind_the_token_with_the_strict_policy() -> None:
    client = _client()
    for path in ("/data", "/consoleish"):
        refused = client.get(path)
        assert refused.status_code == 401, path
        assert (
            refused.headers["Content-Security-Policy"]
            == "default-src 'none'; frame-ancestors 'none'"
        )
    allowed = client.get("/data", headers={"Authorization": "Bearer right"})
    assert allowed.status_code == 200
    assert allowed.headers["Content-Security-Policy"] == SECURITY_HEADERS["Content-Security-Policy"]
