"""Access control of the order API: every endpoint by every kind of caller.

Missing, malformed, unknown and expired tokens get 401 with a ``WWW-Authenticate``
challenge and change nothing; a security reviewer may read but not change (403); legal
officers and administrators may do everything, and a change names the token's officer,
never someone from the request. No token ever appears in the logs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient
from orders_support import LocalService, Tokens, bearer, local_service, order_body
from sharing_guard.contract.events import OrderApproved, OrderRegistered, OrderRevoked


@dataclass(frozen=True)
class Endpoint:
    name: str
    method: str
    path: str
    body: dict[str, object] | None
    changes: bool
    success: int


ENDPOINTS = [
    Endpoint("register", "POST", "/orders", order_body("order-new"), True, 201),
    Endpoint("approve", "POST", "/orders/order-setup/approve", None, True, 200),
    Endpoint(
        "revoke", "POST", "/orders/order-setup/revoke", {"reason": "court lifted it"}, True, 200
    ),
    Endpoint("list", "GET", "/orders", None, False, 200),
    Endpoint("show", "GET", "/orders/order-setup", None, False, 200),
]

# (caller, how its Authorization header is made, officer id or None when refused with 401)
UNAUTHENTICATED = {
    "missing": (lambda t: None, "missing bearer token"),
    "empty bearer": (lambda t: "Bearer", "malformed bearer token"),
    "not a token": (lambda t: "Bearer not-a-token", "malformed bearer token"),
    "basic scheme": (lambda t: "Basic " + t.officer_a, "malformed bearer token"),
    "truncated": (lambda t: "Bearer " + t.officer_a[:-1], "malformed bearer token"),
    "unknown": (lambda t: "Bearer " + t.unknown, "unknown token"),
    "expired": (lambda t: "Bearer " + t.expired, "token expired"),
}
AUTHENTICATED = {
    "legal officer": (lambda t: t.officer_a, "officer-a"),
    "administrator": (lambda t: t.admin, "admin-1"),
    "security reviewer": (lambda t: t.reviewer, "reviewer-1"),
}


def _setup() -> tuple[LocalService, TestClient]:
    local = local_service()
    client = TestClient(local.app)
    response = client.post(
        "/orders", json=order_body("order-setup"), headers=bearer(local.tokens.officer_b)
    )
    assert response.status_code == 201
    return local, client


def _call(client: TestClient, endpoint: Endpoint, authorization: str | None) -> object:
    headers = {} if authorization is None else {"Authorization": authorization}
    return client.request(endpoint.method, endpoint.path, json=endpoint.body, headers=headers)


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.name)
@pytest.mark.parametrize("caller", list(UNAUTHENTICATED))
def test_without_a_valid_token_every_endpoint_answers_401(
    endpoint: Endpoint, caller: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    local, client = _setup()
    before = list(local.published)
    header, detail = UNAUTHENTICATED[caller]
    response = _call(client, endpoint, header(local.tokens))
    assert response.status_code == 401, response.text
    assert response.json() == {"detail": detail}
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ")
    assert ("invalid_token" in challenge) == (caller != "missing")
    assert local.published == before
    _no_token_in(caplog.text, local.tokens)


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.name)
@pytest.mark.parametrize("caller", list(AUTHENTICATED))
def test_roles_decide_what_an_authenticated_caller_may_do(
    endpoint: Endpoint, caller: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    local, client = _setup()
    before = len(local.published)
    token_of, officer = AUTHENTICATED[caller]
    response = _call(client, endpoint, "Bearer " + token_of(local.tokens))
    may_change = caller != "security reviewer"
    if endpoint.changes and not may_change:
        assert response.status_code == 403, response.text
        assert "security_reviewer may not" in response.json()["detail"]
        assert len(local.published) == before
    else:
        assert response.status_code == endpoint.success, response.text
    if endpoint.changes and may_change:
        (event,) = local.published[before:]
        actor = {
            OrderRegistered: lambda e: e.registered_by,
            OrderApproved: lambda e: e.approved_by,
            OrderRevoked: lambda e: e.revoked_by,
        }[type(event)](event)
        assert actor == officer
        body = response.json()
        assert body["order_ref"] == event.order_ref
        assert f"officer={officer}" in caplog.text
        assert f"order_ref={event.order_ref}" in caplog.text
    _no_token_in(caplog.text, local.tokens)


def test_a_name_in_the_body_is_refused_not_used() -> None:
    local, client = _setup()
    response = client.post(
        "/orders",
        json=order_body("order-x", registered_by="officer-b"),
        headers=bearer(local.tokens.officer_a),
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "registered_by"]
    assert client.get("/orders/order-x", headers=bearer(local.tokens.officer_a)).status_code == 404


def test_health_endpoints_need_no_token() -> None:
    _, client = _setup()
    assert client.get("/livez").json() == {"live": True}
    assert client.get("/readyz").status_code == 200
    assert client.get("/openapi.json").status_code == 200


def _no_token_in(text: str, tokens: Tokens) -> None:
    for token in vars(tokens).values():
        assert token not in text
        assert token[4:20] not in text
