"""The order service against a hostile or careless caller: one test per finding of the
hardening review (issue #16), each on the real app, store, authentication and log format."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from orders_support import NOW, LocalService, bearer, local_service, order_body
from sharing_guard.cli import main
from sharing_guard.edge.asgi import SECURITY_HEADERS
from sharing_guard.edge.identifiers import ORDER_REF_PATTERN
from sharing_guard.edge.logsafe import LOG_FORMAT, SafeFormatter
from sharing_guard.orders.auth import load_entries


@pytest.fixture
def local() -> LocalService:
    return local_service()


@pytest.fixture
def client(local: LocalService) -> TestClient:
    return TestClient(local.app, raise_server_exceptions=False)


@pytest.fixture
def log_text() -> Iterator[io.StringIO]:
    """The service's log as its own format writes it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(SafeFormatter(LOG_FORMAT))
    service = logging.getLogger("sharing_guard")
    level = service.level
    service.addHandler(handler)
    service.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        service.removeHandler(handler)
        service.setLevel(level)


def _secured(response: object) -> bool:
    headers = response.headers  # type: ignore[attr-defined]
    return all(headers.get(name) == value for name, value in SECURITY_HEADERS.items())


# 1. Log forging without a token.
@pytest.mark.parametrize(
    "smuggled",
    [
        "z%E2%80%A82026-06-01 12:00:00,000 INFO sharing_guard.orders.service: "
        "order approved: order_ref=FORGED-3 officer=officer-b",
        "z%C2%852026-06-01 INFO order approved",
        "%1B[31mred",
        "a%0Bb%0Cc%00d",
        "a%0A2026-06-01 INFO forged",
    ],
)
def test_a_path_sent_without_a_token_cannot_forge_a_log_line(
    client: TestClient, log_text: io.StringIO, smuggled: str
) -> None:
    response = client.get(f"/orders/{smuggled}")
    assert response.status_code == 401
    lines = log_text.getvalue().splitlines()  # every Unicode line boundary
    assert len(lines) == 2, lines  # the refusal, then the request line
    assert "unauthenticated call refused" in lines[0]
    assert all(line.isprintable() for line in lines)
    assert not any(line.startswith("2026-06-01") for line in lines)


# 2. An order reference with "/".
def test_an_order_reference_with_slashes_works_by_every_route_and_encoding(
    local: LocalService, client: TestClient
) -> None:
    a, b = bearer(local.tokens.officer_a), bearer(local.tokens.officer_b)
    ref = "ZH/2026/117"
    assert client.post("/orders", json=order_body(ref), headers=a).status_code == 201
    assert client.get("/orders/ZH/2026/117", headers=a).json()["order_ref"] == ref
    assert client.get("/orders/ZH%2F2026%2F117", headers=a).json()["order_ref"] == ref
    approved = client.post("/orders/ZH%2F2026%2F117/approve", headers=b)
    assert approved.status_code == 200, approved.text
    assert approved.json()["state"] == "IN_FORCE"
    revoked = client.post("/orders/ZH/2026/117/revoke", json={"reason": "lifted"}, headers=a)
    assert (revoked.status_code, revoked.json()["state"]) == (200, "REVOKED")
    # A method the route does not take names only that route's methods.
    wrong = client.delete("/orders/ZH/2026/117/revoke", headers=a)
    assert (wrong.status_code, wrong.headers["Allow"]) == (405, "POST")


# 3. No page that loads scripts from a public CDN.
@pytest.mark.parametrize("page", ["/docs", "/redoc", "/docs/oauth2-redirect"])
def test_no_api_docs_page_loads_scripts_from_a_cdn(
    local: LocalService, client: TestClient, page: str
) -> None:
    assert client.get(page).status_code == 401
    with_token = client.get(page, headers=bearer(local.tokens.reviewer))
    assert with_token.status_code == 404
    assert "cdn" not in with_token.text.lower()
    assert client.get("/openapi.json").status_code == 200  # the description stays


# 5. Security headers on every response, errors included.
def test_every_response_carries_the_security_headers(
    local: LocalService, client: TestClient
) -> None:
    a = bearer(local.tokens.officer_a)
    client.post("/orders", json=order_body("o-1"), headers=a)
    responses = [
        client.get("/orders", headers=a),
        client.get("/orders/o-1", headers=a),
        client.get("/orders/nope", headers=a),
        client.get("/orders"),
        client.post("/orders", content=b"{", headers=a),
        client.get("/livez"),
        client.get("/openapi.json"),
    ]
    assert [r.status_code for r in responses] == [200, 200, 404, 401, 422, 200, 200]
    assert all(_secured(r) for r in responses)


# 6. The token before the body; a size cap before parsing.
def test_the_token_is_checked_before_the_body_is_read(client: TestClient) -> None:
    malformed = client.post("/orders", content=b"{not json", headers={"content-type": "x"})
    assert malformed.status_code == 401
    huge = client.post("/orders", content=b"[" + b"0," * 30_000_000 + b"0]")
    assert huge.status_code == 413  # announced as too large: refused before anything else


def test_a_body_over_the_limit_is_refused_unread_even_when_streamed(
    local: LocalService, client: TestClient
) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"reason": "'
        for _ in range(700):
            yield b"x" * 1024
        yield b'"}'

    response = client.post(
        "/orders/o-1/revoke", content=chunks(), headers=bearer(local.tokens.admin)
    )
    assert response.status_code == 413
    assert "524288 bytes" in response.json()["detail"]


# 7. An order too large for a broker record is refused up front, naming the limit.
def test_an_order_too_large_for_the_broker_is_refused_up_front(
    local: LocalService, client: TestClient
) -> None:
    accounts = [f"acct-{n:05d}-{'x' * 90}" for n in range(10_000)]
    body = order_body("o-big", account_ids=accounts)
    response = client.post("/orders", json=body, headers=bearer(local.tokens.officer_a))
    assert response.status_code == 413
    assert "524288 bytes" in response.json()["detail"]
    assert local.published == []


# 8. Validity windows and look-alike references.
def test_a_window_that_has_ended_or_has_no_length_is_refused(
    local: LocalService, client: TestClient
) -> None:
    a = bearer(local.tokens.officer_a)
    past = order_body(
        "o-past",
        valid_from=(NOW - timedelta(days=30)).isoformat(),
        valid_until=(NOW - timedelta(days=1)).isoformat(),
    )
    empty = order_body("o-empty", valid_from=NOW.isoformat(), valid_until=NOW.isoformat())
    for body, message in ((past, "has ended"), (empty, "has no length")):
        response = client.post("/orders", json=body, headers=a)
        assert response.status_code == 422
        (problem,) = response.json()["detail"]
        assert message in problem["msg"]
    assert local.published == []


@pytest.mark.parametrize(
    ("ref", "why"),
    [
        ("AZ-1\u200b", "U+200B"),
        (" ", "begin or end"),
        ("AZ\x001", "U+0000"),
        ("AZ-\u202e1", "U+202E"),
        ("AZ--\u0410", "U+0410"),  # a Cyrillic A among Latin letters
        ("..", "letter or a digit"),  # a client would resolve it as the path's parent
        ("ZH/../117", "letter or a digit"),
    ],
)
def test_references_that_hide_or_fake_characters_are_refused(
    local: LocalService, client: TestClient, ref: str, why: str
) -> None:
    response = client.post("/orders", json=order_body(ref), headers=bearer(local.tokens.officer_a))
    assert response.status_code == 422
    (problem,) = response.json()["detail"]
    assert problem["loc"] == ["body", "order_ref"]
    assert why in problem["msg"]
    if len(ref.strip()) > 2:
        assert ref not in response.text  # named by code point, never echoed


def test_a_full_width_reference_is_the_same_order(local: LocalService, client: TestClient) -> None:
    a = bearer(local.tokens.officer_a)
    assert client.post("/orders", json=order_body("AZ-1"), headers=a).status_code == 201
    again = client.post("/orders", json=order_body("\uff21\uff3a\uff0d\uff11"), headers=a)
    assert again.status_code == 409  # NFKC: the full-width form is AZ-1, already registered
    shown = client.get("/orders/\uff21\uff3a\uff0d\uff11", headers=a)
    assert shown.json()["order_ref"] == "AZ-1"


# 9. Strict parameters, strict JSON, one Authorization header, no Host reflection.
def test_repeated_or_unknown_query_parameters_are_refused(
    local: LocalService, client: TestClient
) -> None:
    a = bearer(local.tokens.reviewer)
    twice = client.get("/orders?state=PENDING&state=REVOKED", headers=a)
    assert (twice.status_code, twice.json()["detail"]) == (
        400,
        "query parameter 'state' is given more than once",
    )
    assert client.get("/orders?stat=PENDING", headers=a).status_code == 400
    assert client.get("/orders/o-1?x=1", headers=a).status_code == 400


def test_a_json_body_repeating_a_key_is_refused(local: LocalService, client: TestClient) -> None:
    body = json.dumps(order_body("o-dup"))[:-1] + ', "order_ref": "o-other"}'
    response = client.post(
        "/orders",
        content=body.encode(),
        headers={**bearer(local.tokens.officer_a), "content-type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "duplicate_key"
    assert local.published == []


def test_two_authorization_headers_are_refused(local: LocalService, client: TestClient) -> None:
    valid = bearer(local.tokens.officer_a)["Authorization"]
    response = client.get(
        "/orders", headers=[("authorization", valid), ("authorization", "Bearer sgo_other")]
    )
    assert response.status_code == 400
    assert 'error="invalid_request"' in response.headers["WWW-Authenticate"]


def test_no_redirect_reflects_the_host_header(local: LocalService, client: TestClient) -> None:
    response = client.get(
        "/orders/",
        headers={**bearer(local.tokens.reviewer), "host": "evil.example"},
        follow_redirects=False,
    )
    assert response.status_code != 307
    assert "evil.example" not in response.headers.get("location", "")


@pytest.mark.parametrize("days", ["-1", "0", "nan"])
def test_a_token_that_would_be_expired_is_not_issued(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], days: str
) -> None:
    tokens = tmp_path / "tokens.json"
    args = ["orders", "token", "--officer", "officer-a", "--role", "legal_officer"]
    status = main([*args, "--valid-days", days, "--tokens-file", str(tokens)])
    out, err = capsys.readouterr()
    assert status == 2
    assert "--valid-days must be more than 0" in err
    assert (out, tokens.exists()) == ("", False)
    assert main([*args, "--valid-days", "1", "--tokens-file", str(tokens)]) == 0
    assert len(load_entries(tokens)) == 1


def test_an_officer_id_outside_the_policy_is_refused_when_issuing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tokens = tmp_path / "tokens.json"
    args = ["orders", "token", "--role", "legal_officer", "--tokens-file", str(tokens)]
    status = main([*args, "--officer", "officer\u202ea"])
    assert status == 2
    assert "U+202E" in capsys.readouterr().err
    assert not tokens.exists()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ref=st.from_regex(ORDER_REF_PATTERN, fullmatch=True).filter(lambda r: len(r) <= 128))
def test_every_reference_the_policy_allows_works_in_every_route(ref: str) -> None:
    """Registered, shown, approved and revoked by reference, encoded as the CLI encodes it
    (every character, ``/`` included), whatever allowed characters it holds."""
    local = local_service()
    client = TestClient(local.app)
    a, b = bearer(local.tokens.officer_a), bearer(local.tokens.officer_b)
    assert client.post("/orders", json=order_body(ref), headers=a).status_code == 201
    path = f"/orders/{quote(ref, safe='')}"
    assert client.get(path, headers=a).json()["order_ref"] == ref
    assert client.post(f"{path}/approve", headers=b).json()["state"] == "IN_FORCE"
    revoked = client.post(f"{path}/revoke", json={"reason": "lifted"}, headers=a)
    assert revoked.json()["state"] == "REVOKED"
