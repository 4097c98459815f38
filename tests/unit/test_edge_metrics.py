"""The edge's ``observe`` hook and the request metrics recorded through it.

A small app behind :class:`~sharing_guard.edge.asgi.Edge` (a bearer token on every path but
the public ones): the hook is called once per request, after the answer, with a standard
method, the route *template* (also for requests the edge refuses before routing), the status
and the time; never the path as sent. A failing hook never fails a request.
"""

from __future__ import annotations

import logging
import warnings

import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from sharing_guard.edge.asgi import UNMATCHED_ROUTE, Edge, EdgePolicy, UnauthorizedError
from sharing_guard.edge.metrics import HttpMetrics, prometheus_meter, render

with warnings.catch_warnings():  # Starlette asks for httpx2 here; httpx is what is installed
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

TOKEN = "Bearer right"
AUTH = {"Authorization": TOKEN}
PERSONAL = "acct-42"

Call = tuple[str, str, int, float]


def _authenticate(header: str | None) -> str:
    if header != TOKEN:
        raise UnauthorizedError("send the right token", "Bearer")
    return "caller"


def _app(observe: object, max_body_bytes: int = 1024) -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    app.router.redirect_slashes = False
    policy = EdgePolicy(
        max_body_bytes,
        _authenticate,
        frozenset({"/health"}),
        logging.getLogger("test.edge"),
        observe=observe,  # type: ignore[arg-type]
    )
    app.add_middleware(Edge, policy=policy)

    @app.get("/health")
    def health() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/items/{item_id:path}")
    def item(item_id: str) -> dict[str, str]:
        return {"item": item_id}

    @app.post("/items/{item_id:path}/close")
    def close(item_id: str) -> dict[str, str]:
        return {"closed": item_id}

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError(PERSONAL)

    return app


@pytest.fixture
def calls() -> list[Call]:
    return []


@pytest.fixture
def client(calls: list[Call]) -> TestClient:
    def observe(method: str, route: str, status: int, seconds: float) -> None:
        calls.append((method, route, status, seconds))

    return TestClient(_app(observe), raise_server_exceptions=False)


def test_each_request_is_observed_once_by_route_template_and_status(
    client: TestClient, calls: list[Call]
) -> None:
    assert client.get(f"/items/{PERSONAL}", headers=AUTH).status_code == 200
    assert client.post(f"/items/{PERSONAL}/close", headers=AUTH).status_code == 200
    assert client.get("/health").status_code == 200

    assert [(m, r, s) for m, r, s, _ in calls] == [
        ("GET", "/items/{item_id}", 200),
        ("POST", "/items/{item_id}/close", 200),
        ("GET", "/health", 200),
    ]
    assert all(0 <= seconds < 10 for *_, seconds in calls)


def test_refusals_before_routing_are_observed_with_the_template_never_the_path(
    client: TestClient, calls: list[Call]
) -> None:
    responses = [
        client.get(f"/items/{PERSONAL}"),  # no token: 401 before any route runs
        client.get(f"/items/{PERSONAL}", headers=[("Authorization", TOKEN)] * 2),  # 400
        client.post(f"/items/{PERSONAL}/close", headers=AUTH, content=b"x" * 2048),  # 413
        client.get(f"/nowhere/{PERSONAL}", headers=AUTH),  # no route takes it
        client.delete(f"/items/{PERSONAL}", headers=AUTH),  # the path, not the method
        client.request("BREW", f"/items/{PERSONAL}", headers=AUTH),
        client.get("/boom", headers=AUTH),
    ]

    assert [r.status_code for r in responses] == [401, 400, 413, 404, 405, 405, 500]
    assert [(m, r, s) for m, r, s, _ in calls] == [
        ("GET", "/items/{item_id}", 401),
        ("GET", "/items/{item_id}", 400),
        ("POST", "/items/{item_id}/close", 413),
        ("GET", UNMATCHED_ROUTE, 404),
        ("DELETE", "/items/{item_id}", 405),
        ("_OTHER", "/items/{item_id}", 405),
        ("GET", "/boom", 500),
    ]
    assert not any(PERSONAL in route for _, route, *_ in calls)


def test_a_failing_hook_is_logged_and_never_fails_the_request(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def observe(method: str, route: str, status: int, seconds: float) -> None:
        raise ValueError(PERSONAL)

    client = TestClient(_app(observe), raise_server_exceptions=True)
    with caplog.at_level(logging.WARNING, logger="test.edge"):
        response = client.get(f"/items/{PERSONAL}", headers=AUTH)

    assert response.status_code == 200
    assert "request metrics failed: ValueError" in caplog.text
    assert PERSONAL not in caplog.text


def test_without_a_hook_the_edge_works_as_before() -> None:
    client = TestClient(_app(None))
    assert client.get("/health").status_code == 200
    assert client.get("/items/x").status_code == 401


def test_http_metrics_export_requests_and_durations_by_template() -> None:
    exposition = prometheus_meter("test-service", "test")
    metrics = HttpMetrics(exposition.meter, "test")
    client = TestClient(_app(metrics.observe))
    for _ in range(3):
        client.get(f"/items/{PERSONAL}", headers=AUTH)
    client.get(f"/items/{PERSONAL}")

    response = render(exposition.registry)
    text = bytes(response.body).decode()
    samples = {
        (
            s.name,
            tuple(sorted((k, v) for k, v in s.labels.items() if not k.startswith("otel"))),
        ): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    ok = (("method", "GET"), ("route", "/items/{item_id}"), ("status", "200"))
    refused = (("method", "GET"), ("route", "/items/{item_id}"), ("status", "401"))
    assert samples[("test_http_requests_total", ok)] == 3
    assert samples[("test_http_requests_total", refused)] == 1
    timed = (("method", "GET"), ("route", "/items/{item_id}"))
    assert samples[("test_http_request_duration_seconds_count", timed)] == 4
    assert samples[("test_http_request_duration_seconds_bucket", (("le", "+Inf"), *timed))] == 4
    assert "process_cpu_seconds_total" in text  # the process collectors, on the same registry
    assert PERSONAL not in text
    assert str(response.media_type).startswith("text/plain")
