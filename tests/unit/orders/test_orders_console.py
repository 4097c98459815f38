"""The officers' console as the order service serves it, and the API calls it relies on.

The page's files need no token and carry the page policy (self-only scripts and styles,
Trusted Types, never framed); ``GET /me`` needs the token and names its officer; no
response sets a cookie or grants CORS, so a cross-site form can change nothing: it cannot
send the ``Authorization`` header, and even with a token a form-encoded body is refused.
"""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from orders_support import LocalService, bearer, local_service, order_body
from sharing_guard.edge.asgi import PAGE_CSP, SECURITY_HEADERS
from sharing_guard.orders.console import MEDIA_TYPES, console_files

CROSS_SITE = {
    "Origin": "https://attacker.example",
    "Content-Type": "application/x-www-form-urlencoded",
}
FORM = "order_type=COURT_ORDER&authority=court&jurisdiction=CH&recipient_id=x&reason=lifted"


@pytest.fixture
def local() -> LocalService:
    return local_service()


@pytest.fixture
def client(local: LocalService) -> TestClient:
    return TestClient(local.app)


@pytest.mark.parametrize(
    ("path", "name"),
    [("/console/", "index.html"), *((f"/console/{name}", name) for name in MEDIA_TYPES)],
)
def test_the_console_files_need_no_token_and_carry_the_page_policy(
    client: TestClient, path: str, name: str
) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.content == console_files()[name]
    assert response.headers["Content-Type"] == MEDIA_TYPES[name]
    assert response.headers["Content-Security-Policy"] == PAGE_CSP
    for header in ("X-Content-Type-Options", "X-Frame-Options", "Cache-Control"):
        assert response.headers[header] == SECURITY_HEADERS[header]
    assert "set-cookie" not in response.headers


def test_the_console_address_without_slash_leads_to_the_page(client: TestClient) -> None:
    response = client.get("/console", follow_redirects=False)
    assert response.status_code == 308
    assert response.headers["Location"] == "console/"  # relative: no Host header echoed


def test_only_the_console_files_are_served(client: TestClient) -> None:
    for path in ("/console/secret.txt", "/console/console.js.map", "/console/orders"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert response.headers["Content-Type"] == "application/json"
    # A path that only starts like the console's stays behind the token.
    assert client.get("/consoles").status_code == 401


def test_the_console_routes_are_not_in_the_api_description(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if p.startswith("/console")]
    assert "/me" in paths


def test_the_page_loads_only_its_own_files_and_builds_no_html_from_strings() -> None:
    files = {name: content.decode() for name, content in console_files().items()}
    page = files["index.html"]
    scripts = re.findall(r"<script\b[^>]*>", page)
    assert scripts == ['<script src="console.js" defer>']
    assert re.findall(r"<script\b[^>]*>\s*</script>", page)  # no inline code
    assert " style=" not in page
    assert "<style" not in page
    assert not re.search(r"\son\w+=", page)  # no inline event handler
    assert not re.search(r"(src|href)=\"(https?:)?//", page)  # nothing from another origin
    script = files["console.js"]
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script, sink
    for storage in ("localStorage", "document.cookie", "console.log", "console.error"):
        assert storage not in script, storage
    assert 'credentials: "omit"' in script
    assert "sessionStorage" in script


def test_me_needs_the_token_and_names_its_officer(local: LocalService, client: TestClient) -> None:
    refused = client.get("/me")
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    unknown = client.get("/me", headers=bearer(local.tokens.unknown))
    assert (unknown.status_code, unknown.json()["detail"]) == (401, "unknown token")
    assert client.get("/me", headers=bearer(local.tokens.expired)).status_code == 401
    officer = client.get("/me", headers=bearer(local.tokens.officer_a))
    assert officer.status_code == 200
    assert officer.json() == {
        "officer_id": "officer-a",
        "role": "legal_officer",
        "actions": ["register", "approve", "revoke", "read"],
    }
    reviewer = client.get("/me", headers=bearer(local.tokens.reviewer)).json()
    assert (reviewer["officer_id"], reviewer["role"], reviewer["actions"]) == (
        "reviewer-1",
        "security_reviewer",
        ["read"],
    )
    assert client.get("/me?who=x", headers=bearer(local.tokens.officer_a)).status_code == 400


def test_a_cross_site_form_post_changes_nothing(local: LocalService, client: TestClient) -> None:
    b = bearer(local.tokens.officer_b)
    assert client.post("/orders", json=order_body("o-1"), headers=b).status_code == 201
    published = len(local.published)
    for path in ("/orders", "/orders/o-1/approve", "/orders/o-1/revoke"):
        response = client.post(path, content=FORM, headers=CROSS_SITE)
        assert response.status_code == 401, path
        assert "access-control-allow-origin" not in response.headers
        assert "set-cookie" not in response.headers
    # Even with a token (which a cross-site form cannot send), a form body is not an order.
    with_token = client.post("/orders", content=FORM, headers={**CROSS_SITE, **b})
    assert with_token.status_code == 422
    revoke = client.post("/orders/o-1/revoke", content=FORM, headers={**CROSS_SITE, **b})
    assert revoke.status_code == 422
    assert len(local.published) == published
    shown = client.get("/orders/o-1", headers=b).json()
    assert (shown["state"], shown["revoked_by"]) == ("PENDING", None)


def test_no_cors_is_ever_granted(local: LocalService, client: TestClient) -> None:
    preflight = {
        "Origin": "https://attacker.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    for path in ("/orders", "/orders/o-1/approve", "/me", "/console/"):
        response = client.options(path, headers=preflight)
        assert response.status_code >= 400, path
        assert not [h for h in response.headers if h.startswith("access-control-")], path
    answered = client.get(
        "/orders", headers={"Origin": "https://attacker.example", **bearer(local.tokens.reviewer)}
    )
    assert answered.status_code == 200
    assert "access-control-allow-origin" not in answered.headers
