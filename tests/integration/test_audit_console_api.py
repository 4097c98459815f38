# ruff: noqa: F811 - the fixtures imported below are the parameters of the tests
"""The security console's routes on the audit API, on SQLite and PostgreSQL: the search by
body, the clause filter, one decision, the status, the export, and the console's page files.

The single log is the 15-entry log of ``test_audit_http`` (its ``served`` fixture); the
sharded trail is the three-shard trail of ``test_audit_shards_read`` (its ``trail``
fixture). Answers are compared with ``GET /entries``, which ``test_audit_http`` compares
with the plain functions.
"""

from __future__ import annotations

import io
import logging
import tarfile
from pathlib import Path
from typing import Any

import httpx
import pytest
from audit_sink.heads import member_verifier, shard_origin
from audit_sink.http_api import CONSOLE_PAGES
from audit_sink.http_console import CONSOLE_FILES
from audit_sink.words import CLAUSE_WORDS, REASON_WORDS
from fastapi.testclient import TestClient
from sharing_guard.contract.enums import Clause, ReasonCode
from sharing_guard.edge.asgi import PAGE_CSP, SECURITY_HEADERS
from test_audit_http import (  # noqa: F401 - fixtures
    ERASED,
    SIGNED,
    SIZE,
    TOKEN,
    Served,
    _flip_leaf_byte,
    served,
    storeless,
)
from test_audit_shards_read import SHARDS, Trail, trail  # noqa: F401 - fixture
from test_audit_shards_read import TOKEN as TRAIL_TOKEN
from test_audit_support import (
    pg_names,  # noqa: F401 - fixture
    verify_export,
)

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _auth(client: TestClient) -> dict[str, str]:
    """The token of the app under ``client`` (each test module makes its own)."""
    token = TRAIL_TOKEN if getattr(client, "sharded", False) else TOKEN
    return {"Authorization": f"Bearer {token}"}


def post_search(client: TestClient, body: dict[str, Any]) -> httpx.Response:
    response: httpx.Response = client.post("/entries/search", json=body, headers=_auth(client))
    return response


def get(client: TestClient, url: str, **params: Any) -> httpx.Response:
    response: httpx.Response = client.get(url, params=params, headers=_auth(client))
    return response


# -- search by body ------------------------------------------------------------------------------

CRITERIA = [
    {"account": "acct-1"},
    {"account": "acct-2"},  # erased: no longer found
    {"outcome": "BLOCK", "recipient": "rcp-1"},
    {"reason": "CONSENT"},
    {"order_ref": "ord-7"},
    {"from": "2026-11-01T12:03:00Z", "to": "2026-11-01T12:09:00+00:00"},
    {"account": "acct-0", "limit": 2},
    {"clause": "C-THIRD-PARTY-CONSENT", "outcome": "ALLOW"},
    {},
]


@pytest.mark.parametrize("criteria", CRITERIA, ids=[str(c) for c in CRITERIA])
def test_a_search_by_body_answers_as_entries_with_the_same_criteria(
    served: Served, criteria: dict[str, Any]
) -> None:
    by_body = post_search(served.client, criteria)
    by_query = get(served.client, "/entries", **criteria)

    assert by_body.status_code == by_query.status_code == 200
    assert by_body.headers["Content-Type"] == "application/json"
    assert by_body.json() == by_query.json()
    truncated = "Audit-Sink-Truncated"
    assert by_body.headers[truncated] == by_query.headers[truncated]
    if criteria.get("limit") == 2:
        assert by_body.headers[truncated] == "true"


def test_a_search_by_body_finds_an_account_without_naming_it_in_a_url(served: Served) -> None:
    found = post_search(served.client, {"account": "acct-1"}).json()

    assert [e["event_id"] for e in found] == ["evt-000001", "evt-000004", "evt-000007",
                                             "evt-000010", "evt-000013"]  # fmt: skip
    assert {e["account_id"] for e in found} == {"acct-1"}


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"acount": "acct-secret"}, ["body", "acount"]),
        ({"occurred_from": "2026-11-01T00:00:00Z"}, ["body", "occurred_from"]),
        ({"limit": 0}, ["body", "limit"]),
        ({"limit": 10_001}, ["body", "limit"]),
        ({"outcome": "MAYBE"}, ["body", "outcome"]),
        ({"clause": "C-NOT-A-CLAUSE"}, ["body", "clause"]),
        ({"account": ""}, ["body", "account"]),
        ({"account": "x" * 257}, ["body", "account"]),
    ],
)
def test_a_search_body_with_an_unknown_key_or_a_bad_value_is_a_422(
    storeless: TestClient, body: dict[str, Any], where: list[str]
) -> None:
    response = post_search(storeless, body)  # no store: the body is checked first

    assert response.status_code == 422
    assert [p["loc"] for p in response.json()["detail"]] == [where]
    assert "acct-secret" not in response.text


def test_a_search_body_that_is_not_a_json_object_is_refused(storeless: TestClient) -> None:
    for content in (b"account=acct-1", b"[]", b'{"account": "a", "account": "b"}'):
        response = storeless.post(
            "/entries/search",
            content=content,
            headers={**AUTH, "Content-Type": "application/json"},
        )
        assert response.status_code == 422, content


def test_a_zoneless_instant_in_a_search_body_is_a_400(storeless: TestClient) -> None:
    response = post_search(storeless, {"from": "2026-11-01T00:00:00"})

    assert response.status_code == 400
    assert "needs a time zone" in response.json()["detail"]


# -- the clause filter ---------------------------------------------------------------------------


def test_the_clause_filter_keeps_the_entries_a_reason_files_under_the_clause(
    served: Served,
) -> None:
    everything = get(served.client, "/entries").json()
    with_reasons = [e for e in everything if e["reasons"]]  # every reason is third-party consent

    third_party = get(served.client, "/entries", clause="C-THIRD-PARTY-CONSENT")
    # CONSENT_MISSING may also stand under the marketing clause, but none of these does.
    marketing = get(served.client, "/entries", clause="C-MARKETING-CONSENT")
    vdd = post_search(served.client, {"clause": "C-VDD-NO-SHARING"})
    both = post_search(served.client, {"clause": "C-THIRD-PARTY-CONSENT", "reason": "CONSENT"})
    mismatched = post_search(served.client, {"clause": "C-FRAUD", "reason": "CONSENT"})
    cut = get(served.client, "/entries", clause="C-THIRD-PARTY-CONSENT", limit=3)

    assert third_party.json() == with_reasons
    assert third_party.headers["Audit-Sink-Truncated"] == "false"
    assert marketing.json() == vdd.json() == mismatched.json() == []
    assert both.json() == get(served.client, "/entries", reason="CONSENT").json()
    assert cut.json() == with_reasons[:3]
    assert cut.headers["Audit-Sink-Truncated"] == "true"
    assert get(served.client, "/entries", clause="C-NOPE").status_code == 422


# -- one decision --------------------------------------------------------------------------------


def test_one_decision_shows_its_entry_its_reasons_in_words_and_where_it_is(
    served: Served,
) -> None:
    listed = {e["event_id"]: e for e in get(served.client, "/entries").json()}

    response = get(served.client, "/entries/evt-000004")

    assert response.status_code == 200
    body = response.json()
    assert body["entry"] == listed["evt-000004"]
    assert body["reasons"] == [
        {
            "code": "CONSENT_MISSING",
            "clause": "C-THIRD-PARTY-CONSENT",
            "text": REASON_WORDS[ReasonCode.CONSENT_MISSING],
            "clause_text": CLAUSE_WORDS[Clause.THIRD_PARTY_CONSENT],
        }
    ]
    assert (body["index"], body["shard"], body["member"], body["origin"]) == (
        4,
        None,
        "log",
        served.backend.origin,
    )
    assert (body["checkpoint_size"], body["provable"], body["order_ref"]) == (SIGNED, True, None)
    assert get(served.client, "/entries/evt-000007").json()["order_ref"] == "ord-7"


def test_an_erased_unsigned_or_unknown_entry_says_so(served: Served) -> None:
    erased = get(served.client, f"/entries/evt-{ERASED[0]:06d}").json()
    unsigned = get(served.client, "/entries/evt-000013").json()
    change = get(served.client, "/entries/evt-000014").json()

    assert erased["entry"]["personal"] == "erased"
    assert erased["entry"]["account_id"] == erased["entry"]["event_json"] == "<erased>"
    assert erased["reasons"][0]["code"] in {"CONSENT", "CONSENT_MISSING"}
    assert (unsigned["index"], unsigned["provable"]) == (13, False)
    assert (change["entry"]["kind"], change["reasons"]) == ("GOVERNANCE_CHANGE", [])
    assert get(served.client, "/entries/evt-nope").status_code == 404
    assert get(served.client, "/entries/").status_code == 404


# -- status --------------------------------------------------------------------------------------


def test_status_shows_sizes_the_latest_checkpoint_and_the_last_verification(
    served: Served,
) -> None:
    before = get(served.client, "/status")
    assert before.status_code == 200
    body = before.json()
    assert body["last_verification"] is None
    assert (body["origin"], body["sharded"], body["size"]) == (served.backend.origin, False, SIZE)
    assert body["members"] == [
        {
            "member": "log",
            "origin": served.backend.origin,
            "shard": None,
            "size": SIZE,
            "checkpoint_size": SIGNED,
            "unsigned": SIZE - SIGNED,
            "newest_entry_at": "2026-11-01T12:11:00.000Z",  # entry 11: the last record signed
        }
    ]
    assert body["newest_entry_at"] == "2026-11-01T12:11:00.000Z"
    assert body["latest_note"] == get(served.client, "/checkpoint").text
    assert (body["latest_note_kind"], body["latest_note_problem"]) == ("checkpoint", None)
    assert body["vkey"] == served.backend.verifier.vkey

    assert get(served.client, "/verify").json()["ok"] is True
    after = get(served.client, "/status").json()["last_verification"]
    assert (after["ok"], after["size"], after["problem_count"], after["first_problem"]) == (
        True,
        SIZE,
        0,
        None,
    )
    assert after["at"].endswith("Z")

    _flip_leaf_byte(served.backend, 6)
    get(served.client, "/verify")
    failed = get(served.client, "/status").json()["last_verification"]
    assert failed["ok"] is False
    assert (failed["first_problem"]["index"], failed["first_problem"]["code"]) == (
        6,
        "leaf-hash-mismatch",
    )


# -- export --------------------------------------------------------------------------------------


def _unpack(response: httpx.Response, into: Path) -> Path:
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/gzip"
    disposition = response.headers["Content-Disposition"]
    assert disposition.startswith("attachment;")
    assert 'filename="audit-export-' in disposition
    assert response.headers["Cache-Control"] == "no-store"
    with tarfile.open(fileobj=io.BytesIO(response.content), mode="r:gz") as tar:
        names = tar.getnames()
        assert all(n == "audit-export" or n.startswith("audit-export/") for n in names)
        tar.extractall(into, filter="data")
    return into / "audit-export"


def test_the_export_download_verifies_offline(served: Served, tmp_path: Path) -> None:
    export = _unpack(get(served.client, "/export"), tmp_path)

    assert not (export / "payloads.bin").exists()  # no ciphertexts
    result = verify_export(export, "--vkey", served.backend.verifier.vkey)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"OK: {SIZE} entries intact, {len(ERASED)} erased"
    assert not list(tmp_path.glob("audit-sink-export-*"))


# -- the sharded trail ---------------------------------------------------------------------------


@pytest.fixture
def sharded(trail: Trail) -> Trail:
    """The sharded trail, its client marked as holding that module's token."""
    trail.client.sharded = True  # type: ignore[attr-defined]
    return trail


def test_a_sharded_trail_names_the_shard_of_each_decision_and_filters_by_clause(
    sharded: Trail,
) -> None:
    trail = sharded
    everything = get(trail.client, "/entries", limit=10_000).json()
    vdd = post_search(trail.client, {"clause": "C-VDD-NO-SHARING", "limit": 10_000}).json()
    by_code = get(trail.client, "/entries", reason="VDD_EGRESS_FORBIDDEN", limit=10_000).json()

    assert vdd == by_code
    assert vdd, "the samples hold blocked VDD transfers"
    for entry in [*vdd[:3], everything[-1]]:
        detail = get(trail.client, f"/entries/{entry['event_id']}").json()
        assert detail["entry"] == entry
        assert (detail["shard"], detail["index"]) == (entry["shard"], entry["index"])
        assert detail["origin"] == shard_origin(trail.origin, entry["shard"])
        assert detail["member"] == f"shard {entry['shard']}"
    first = get(trail.client, f"/entries/{vdd[0]['event_id']}").json()
    assert {"code": "VDD_EGRESS_FORBIDDEN", "clause": "C-VDD-NO-SHARING"}.items() <= (
        first["reasons"][0].items()
    )


def test_a_sharded_trail_status_and_export(sharded: Trail, tmp_path: Path) -> None:
    trail = sharded
    status = get(trail.client, "/status").json()

    assert status["sharded"] is True
    assert [m["shard"] for m in status["members"]] == list(range(SHARDS))
    assert [m["size"] for m in status["members"]] == trail.sizes()
    assert status["size"] == sum(trail.sizes())
    assert status["latest_note_kind"] == "heads"
    assert status["latest_note"] == get(trail.client, "/checkpoint").text

    export = _unpack(get(trail.client, "/export"), tmp_path)
    assert sorted(p.name for p in (export / "shards").iterdir()) == ["0", "1", "2"]
    assert list((export / "heads").glob("*.note"))
    for p in range(SHARDS):
        member = member_verifier(trail.pinned, shard_origin(trail.origin, p))
        result = verify_export(export / "shards" / str(p), "--vkey", member.vkey)
        assert result.returncode == 0, result.stderr


# -- the token, the page, the logs -------------------------------------------------------------


def test_every_console_route_needs_the_token(storeless: TestClient) -> None:
    calls = [
        ("POST", "/entries/search", {"account": "acct-1"}),
        ("GET", "/entries/evt-000004", None),
        ("GET", "/status", None),
        ("GET", "/export", None),
    ]
    for method, url, body in calls:
        response = storeless.request(method, url, json=body)
        assert response.status_code == 401, url
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert (
            response.headers["Content-Security-Policy"]
            == (SECURITY_HEADERS["Content-Security-Policy"])
        )


def test_the_page_files_need_no_token_and_carry_the_page_policy(storeless: TestClient) -> None:
    assert CONSOLE_PAGES == ("/console/",)
    for name, media in CONSOLE_FILES.items():
        response = storeless.get(f"/console/{name}")
        assert response.status_code == 200, name
        assert response.headers["Content-Type"] == media
        assert response.headers["Content-Security-Policy"] == PAGE_CSP
        assert response.headers["X-Frame-Options"] == "DENY"
    index = storeless.get("/console/")
    assert index.text == storeless.get("/console/index.html").text
    assert 'src="console.js"' in index.text
    entry = storeless.get("/console", follow_redirects=False)
    assert (entry.status_code, entry.headers["Location"]) == (307, "console/")
    assert storeless.get("/console/secrets.txt").status_code == 404
    assert storeless.get("/console/../status").status_code == 401
    words = storeless.get("/console/words.json").json()
    assert [r["code"] for r in words["reasons"]] == [c.value for c in ReasonCode]
    assert [c["clause"] for c in words["clauses"]] == [c.value for c in Clause]
    spec = storeless.get("/openapi.json").json()
    assert not [p for p in spec["paths"] if p.startswith("/console")]
    assert {"/entries/search", "/entries/{event_id}", "/status", "/export"} <= set(spec["paths"])


def test_no_script_or_style_is_inline_and_no_html_is_parsed_from_strings() -> None:
    from importlib.resources import files

    folder = files("audit_sink").joinpath("console")
    html = folder.joinpath("index.html").read_text("utf-8")
    assert "<script>" not in html
    assert " style=" not in html
    assert "<style" not in html
    assert " on" not in html.replace(" only", "")  # no inline handler attribute
    for script in ("console.js", "verify.js"):
        text = folder.joinpath(script).read_text("utf-8")
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert sink not in text, (script, sink)
        assert "localStorage.setItem(TOKEN" not in text
        assert "document.cookie" not in text


def test_the_account_searched_for_never_reaches_the_logs(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    post_search(served.client, {"account": "acct-1"})
    post_search(served.client, {"account": "acct-1", "acount": "acct-1"})
    get(served.client, "/entries/evt-000004")
    get(served.client, "/status")

    server = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    logged = "\n".join(f"{r.getMessage()} {r.args!r} {r.exc_text}" for r in server)
    assert "acct-1" not in logged
    assert TOKEN not in logged
    assert "POST /entries/search 200" in logged
    assert "POST /entries/search 422" in logged
    assert "GET /entries/{event_id} 200" in logged
