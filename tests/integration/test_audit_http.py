"""The HTTP API (``audit-sink serve``) against a populated log, on SQLite and PostgreSQL.

The log (built with the builders of ``test_audit_support``) holds 15 entries:

* 0-11: decisions about ``evt-0000nn`` for account ``acct-{n % 3}``, ALLOW/CONSENT when
  ``n`` is odd, else BLOCK/CONSENT_MISSING, recipient ``rcp-{n % 2}``, ``ord-7`` on 7; three
  batches, so checkpoints at 4, 8 and 12;
* 12: the erasure of ``acct-2`` (entries 2, 5, 8, 11), signed: checkpoint 13;
* 13: a BLOCK decision for ``acct-1`` (recipient ``rcp-1``) and 14: a governance change naming
  no account (recipient ``rcp-9``), appended without a checkpoint (the unsigned tail).

The application is built with :func:`audit_sink.http_api.create_app` and driven with FastAPI's
``TestClient``; answers are compared with the plain functions called directly. One test runs
the real server (``serve``, uvicorn) in a subprocess and reads its log output.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from audit_sink import bootstrap, http_api
from audit_sink.archive import CheckpointArchive
from audit_sink.checkpoint import NoteSigner, open_checkpoint, sign_checkpoint
from audit_sink.http_api import ENTRY_PARAMETERS, EntryBody, VerifyBody, create_app, serve
from audit_sink.leaf import decode_leaf
from audit_sink.proof_bundle import open_proof_bundle, parse_proof_bundle, verify_proof_bundle
from audit_sink.query import QueryCriteria, query_entries
from audit_sink.render import render
from audit_sink.sealing import IndexKey
from audit_sink.settings import (
    AuditSinkSettings,
    PostgresSettings,
    SettingsError,
    SqliteSettings,
)
from audit_sink.writer import CheckpointPolicy
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sharing_guard.contract.audit import AuditKind
from sharing_guard.edge.asgi import SECURITY_HEADERS
from test_audit_support import (
    Backend,
    append_decision_batches,
    consumed,
    next_positions,
    pg_backend,
    pg_names,  # noqa: F401
    record,
    sqlite_backend,
    unique_origin,
)

TOKEN = "tok_" + base64.urlsafe_b64encode(os.urandom(30)).decode("ascii")
SIZE, SIGNED = 15, 13
ALL_RECORDS = [*range(12), 13, 14]
ERASED = [2, 5, 8, 11]
PROTECTED = ["/entries", "/verify", "/proof/evt-000004", "/checkpoint"]


class WithToken(AuditSinkSettings):
    """The settings with the API token field (as cli.py's ``serve`` reads it)."""

    api_token: SecretStr | None = None


@dataclass
class Served:
    """A populated log, its settings, and a client of the API over it."""

    backend: Backend
    settings: AuditSinkSettings
    app: FastAPI
    client: TestClient

    def get(self, url: str, **params: Any) -> httpx.Response:
        """GET with the right token."""
        response: httpx.Response = self.client.get(
            url, params=params, headers={"Authorization": f"Bearer {TOKEN}"}
        )
        return response


def populate(backend: Backend) -> None:
    """The 15 entries of the module docstring."""
    log = backend.log()
    append_decision_batches(log)
    assert log.erase("acct-2").erasure_index == 12
    tail = [
        record(13, account="acct-1", recipient="rcp-1"),
        record(14, account=None, recipient="rcp-9", codes=(), kind=AuditKind.GOVERNANCE_CHANGE),
    ]
    batch = consumed(tail, start=13)
    unsigned = backend.log(policy=CheckpointPolicy(every=1000, each_batch=False))
    assert unsigned.append_batch(batch, next_positions(batch)).checkpoint is None


def settings_for(backend: Backend, tmp_path: Path, request: pytest.FixtureRequest) -> WithToken:
    """Settings naming the backend's files or schemas, its origin, vkey and index key."""
    raw = os.urandom(32)
    backend.index_key = IndexKey(raw)
    common: dict[str, Any] = {
        "origin": backend.origin,
        "data_dir": tmp_path / "sink",
        "vkey": backend.verifier.vkey,
        "index_key": SecretStr(base64.b64encode(raw).decode("ascii")),
        "api_token": None,
    }
    if backend.name == "sqlite":
        files = SqliteSettings(log_file=tmp_path / "log.db", keys_file=tmp_path / "keys.db")
        return WithToken(backend="sqlite", sqlite=files, **common)
    names, _ = request.getfixturevalue("pg_names")
    pg = PostgresSettings(
        dsn=SecretStr(request.getfixturevalue("pg_dsn")),
        schema_name=names.schema,
        role=names.writer,
        reader_role=names.reader,
        keys_schema=names.keys_schema,
        keys_role=names.key_role,
    )
    return WithToken(backend="postgres", postgres=pg, **common)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def served(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Served]:
    """The populated log on each store, and the API over it (built with the token)."""
    for name in list(os.environ):
        if name.startswith("AUDIT_SINK_"):
            monkeypatch.delenv(name)
    if request.param == "sqlite":
        backend = sqlite_backend(tmp_path)
    else:
        names, owner_db = request.getfixturevalue("pg_names")
        backend = pg_backend(request.getfixturevalue("pg_dsn"), tmp_path, names, owner_db)
    try:
        settings = settings_for(backend, tmp_path, request)
        populate(backend)
        if backend.name == "sqlite":
            assert settings.log_file().is_file()
            assert settings.keys_file().is_file()
        app = create_app(settings, token=TOKEN)
        with TestClient(app) as client:
            yield Served(backend, settings, app, client)
    finally:
        backend.close()


sqlite_only = pytest.mark.parametrize("served", ["sqlite"], indirect=True)


@pytest.fixture(scope="module")
def storeless(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The API over a log that does not exist: whatever touches the store answers 503, so
    a 401 or a 4xx from it shows the token and the parameters are checked first."""
    origin = unique_origin()
    absent = tmp_path_factory.mktemp("storeless") / "absent"
    settings = AuditSinkSettings(
        origin=origin,
        sqlite=SqliteSettings(log_file=absent / "log.db", keys_file=absent / "keys.db"),
        vkey=NoteSigner.generate(origin).verifier().vkey,
        index_key=SecretStr(base64.b64encode(os.urandom(32)).decode("ascii")),
    )
    with TestClient(create_app(settings, token=TOKEN)) as client:
        yield client


def direct_query(settings: AuditSinkSettings, criteria: QueryCriteria) -> list[dict[str, Any]]:
    """``query_entries`` called directly, through the bootstrap functions the CLI uses."""
    store = bootstrap.open_store(settings, write=False)
    keys = bootstrap.open_keystore(settings)
    try:
        index_key = bootstrap.index_key(settings) if criteria.account_id else None
        with store.reader() as reader:
            return [view.to_dict() for view in query_entries(reader, keys, criteria, index_key)]
    finally:
        keys.close()
        store.close()


# -- authentication ---------------------------------------------------------------------------


def test_healthz_needs_no_token(served: Served) -> None:
    response = served.client.get("/healthz")

    assert (response.status_code, response.json()) == (200, {"ok": True})


BAD_AUTHORIZATIONS = {
    "missing": None,
    "wrong": "Bearer " + "x" * len(TOKEN),
    "prefix": f"Bearer {TOKEN[:-1]}",
    "longer": f"Bearer {TOKEN}x",
    "empty": "Bearer ",
    "no-scheme": TOKEN,
    "basic": "Basic " + base64.b64encode(f"audit:{TOKEN}".encode()).decode(),
    "other-scheme": f"Token {TOKEN}",
    "two-tokens": f"Bearer {TOKEN} {TOKEN}",
}


@pytest.mark.parametrize("route", [*PROTECTED, "/entries?limit=0&outcom=x"])
@pytest.mark.parametrize("authorization", BAD_AUTHORIZATIONS.values(), ids=BAD_AUTHORIZATIONS)
def test_protected_routes_refuse_a_missing_wrong_or_malformed_token(
    storeless: TestClient, route: str, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}

    response = storeless.get(route, headers=headers)

    assert response.status_code == 401  # before any validation of the parameters
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert TOKEN not in response.text
    assert response.headers["Cache-Control"] == "no-store"


@sqlite_only
def test_the_scheme_is_case_insensitive_and_a_wrong_token_is_flagged(served: Served) -> None:
    ok = served.client.get("/checkpoint", headers={"Authorization": f"bearer {TOKEN}"})
    wrong = served.client.get("/checkpoint", headers={"Authorization": "Bearer nope"})
    missing = served.client.get("/checkpoint")

    assert ok.status_code == 200
    assert wrong.headers["WWW-Authenticate"] == 'Bearer realm="audit-sink", error="invalid_token"'
    assert missing.headers["WWW-Authenticate"] == 'Bearer realm="audit-sink"'


def test_openapi_declares_the_bearer_scheme_on_every_protected_route(
    storeless: TestClient,
) -> None:
    response = storeless.get("/openapi.json")  # no token needed: it holds no data

    assert response.status_code == 200
    spec = response.json()
    scheme = spec["components"]["securitySchemes"]["bearerAuth"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    secured = {
        path
        for path, ops in spec["paths"].items()
        if all(op.get("security") for op in ops.values())  # POST /entries/search too
    }
    # Every route but the health check is protected (routes added later included).
    assert secured == set(spec["paths"]) - {"/healthz"}
    assert {"/entries", "/verify", "/proof/{event_id}", "/checkpoint"} <= secured
    assert spec["paths"]["/entries"]["get"]["security"] == [{"bearerAuth": []}]
    assert "security" not in spec["paths"]["/healthz"]["get"]
    proof = spec["paths"]["/proof/{event_id}"]["get"]["responses"]
    assert list(proof["200"]["content"]) == ["text/plain"]
    assert {list(proof[code]["content"]) == ["application/json"] for code in ("401", "404")} == {
        True
    }
    names = {p["name"] for p in spec["paths"]["/entries"]["get"]["parameters"]}
    assert names == ENTRY_PARAMETERS
    auth = {"Authorization": f"Bearer {TOKEN}"}
    for page in ("/docs", "/redoc"):  # no CDN-scripted page, with a token or without
        assert storeless.get(page, headers=auth).status_code == 404
        assert storeless.get(page).status_code == 401


@sqlite_only
def test_create_app_and_serve_refuse_to_run_without_what_they_need(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = served.settings
    for token in ("", "short", "x" * 40 + " y", "\u00e9" * 40):
        with pytest.raises(SettingsError, match="API token"):
            create_app(settings, token=token)
    with pytest.raises(SettingsError, match="pin the log's public key"):
        create_app(settings.model_copy(update={"vkey": None}), token=TOKEN)
    with pytest.raises(SettingsError, match="AUDIT_SINK_ORIGIN"):
        create_app(settings.model_copy(update={"origin": None}), token=TOKEN)
    with pytest.raises(SettingsError, match="AUDIT_SINK_API_TOKEN"):
        serve(settings, "127.0.0.1", 8088)  # api_token is None
    with pytest.raises(SettingsError, match="AUDIT_SINK_API_TOKEN"):
        serve(AuditSinkSettings(origin=settings.origin), "127.0.0.1", 8088)
    with_token = settings.model_copy(update={"api_token": SecretStr(TOKEN)})
    with pytest.raises(SettingsError, match="port"):
        serve(with_token, "127.0.0.1", 70000)
    missing = with_token.model_copy(
        update={"sqlite": SqliteSettings(log_file=Path("/nonexistent/log.db"))}
    )
    with pytest.raises(Exception, match="no audit log"):
        serve(missing, "127.0.0.1", 8088)  # the store is opened once before listening


# -- /entries ---------------------------------------------------------------------------------

FILTERS: dict[str, tuple[dict[str, Any], QueryCriteria, list[int]]] = {
    "none": ({}, QueryCriteria(), ALL_RECORDS),
    "account": ({"account": "acct-1"}, QueryCriteria(account_id="acct-1"), [1, 4, 7, 10, 13]),
    "erased-account": ({"account": "acct-2"}, QueryCriteria(account_id="acct-2"), []),
    "recipient": ({"recipient": "rcp-0"}, QueryCriteria(recipient_id="rcp-0"), [0, 2, 4, 6, 8, 10]),
    "outcome": ({"outcome": "ALLOW"}, QueryCriteria(outcome="ALLOW"), [1, 3, 5, 7, 9, 11]),
    "reason": (
        {"reason": "CONSENT_MISSING"},
        QueryCriteria(reason_code="CONSENT_MISSING"),
        [0, 2, 4, 6, 8, 10, 13],
    ),
    "order-ref": ({"order_ref": "ord-7"}, QueryCriteria(order_ref="ord-7"), [7]),
    "from-to": (
        {"from": "2026-11-01T12:03:00Z", "to": "2026-11-01T12:05:00Z"},
        QueryCriteria(
            occurred_from=datetime.fromisoformat("2026-11-01T12:03:00Z"),
            occurred_to=datetime.fromisoformat("2026-11-01T12:05:00Z"),
        ),
        [3, 4],
    ),
    "from-with-offset": (
        {"from": "2026-11-01T14:12:00+02:00"},
        QueryCriteria(occurred_from=datetime.fromisoformat("2026-11-01T12:12:00Z")),
        [13, 14],
    ),
    "limit": ({"limit": 3}, QueryCriteria(limit=3), [0, 1, 2]),
    "combined": (
        {"account": "acct-1", "outcome": "ALLOW"},
        QueryCriteria(account_id="acct-1", outcome="ALLOW"),
        [1, 7],
    ),
    "recipient-and-outcome": (
        {"recipient": "rcp-1", "outcome": "BLOCK"},
        QueryCriteria(recipient_id="rcp-1", outcome="BLOCK"),
        [13],
    ),
}


@pytest.mark.parametrize(("params", "criteria", "expected"), FILTERS.values(), ids=FILTERS)
def test_entries_filters_return_exactly_what_query_entries_returns(
    served: Served, params: dict[str, Any], criteria: QueryCriteria, expected: list[int]
) -> None:
    response = served.get("/entries", **params)

    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "application/json"
    rows = response.json()
    assert rows == direct_query(served.settings, criteria)
    assert [row["index"] for row in rows] == expected
    truncated = "limit" in params
    assert response.headers["Audit-Sink-Truncated"] == ("true" if truncated else "false")


def test_entries_show_personal_fields_as_query_does(served: Served) -> None:
    rows = {row["index"]: row for row in served.get("/entries").json()}

    opened = rows[4]
    assert (opened["personal"], opened["account_id"]) == ("opened", "acct-1")
    assert json.loads(opened["event_json"])["account_id"] == "acct-1"
    for index in ERASED:
        assert (rows[index]["personal"], rows[index]["account_id"]) == ("erased", "<erased>")
        assert rows[index]["event_json"] == "<erased>"
    governance = rows[14]
    assert (governance["personal"], governance["account_id"], governance["kind"]) == (
        "clear",
        None,
        "GOVERNANCE_CHANGE",
    )
    # The OpenAPI schema is the real one ("shard" appears only for a sharded trail).
    assert set(opened) == set(EntryBody.model_fields) - {"shard"}


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_entries_in_jsonl_and_csv_are_what_query_renders(served: Served, fmt: str) -> None:
    criteria = QueryCriteria(account_id="acct-1")
    store = bootstrap.open_store(served.settings, write=False)
    keys = bootstrap.open_keystore(served.settings)
    try:
        with store.reader() as reader:
            views = query_entries(reader, keys, criteria, bootstrap.index_key(served.settings))
    finally:
        keys.close()
        store.close()

    response = served.get("/entries", account="acct-1", format=fmt)

    assert response.status_code == 200
    assert response.text == render(views, fmt)
    if fmt == "jsonl":
        assert response.headers["Content-Type"] == "application/x-ndjson"
        assert [json.loads(line)["index"] for line in response.text.splitlines()] == [
            1,
            4,
            7,
            10,
            13,
        ]
    else:
        assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
        parsed = list(csv.DictReader(io.StringIO(response.text)))
        assert [row["index"] for row in parsed] == ["1", "4", "7", "10", "13"]
        assert {row["account_id"] for row in parsed} == {"acct-1"}


@sqlite_only
def test_the_limit_bounds_and_flags_a_cut_list(served: Served) -> None:
    exact = served.get("/entries", limit=len(ALL_RECORDS))
    cut = served.get("/entries", limit=len(ALL_RECORDS) - 1, format="csv")

    assert exact.headers["Audit-Sink-Truncated"] == "false"
    assert len(exact.json()) == len(ALL_RECORDS)
    assert cut.headers["Audit-Sink-Truncated"] == "true"
    assert len(cut.text.splitlines()) == len(ALL_RECORDS)  # header + 13 rows


BAD_PARAMETERS: dict[str, tuple[str, int, str]] = {
    "outcome": ("/entries?outcome=MAYBE", 422, "outcome"),
    "limit-zero": ("/entries?limit=0", 422, "limit"),
    "limit-too-large": ("/entries?limit=10001", 422, "limit"),
    "limit-not-a-number": ("/entries?limit=ten", 422, "limit"),
    "format": ("/entries?format=xml", 422, "format"),
    "empty-recipient": ("/entries?recipient=", 422, "recipient"),
    "long-account": ("/entries?account=" + "a" * 300, 422, "account"),
    "from-not-an-instant": ("/entries?from=yesterday", 400, "'from'"),
    "from-without-zone": ("/entries?from=2026-11-01T12:00:00", 400, "'from'"),
    "to-with-raw-plus": ("/entries?to=2026-11-01T12:00:00+01:00", 400, "'to'"),
    "unknown-parameter": ("/entries?outcom=BLOCK", 400, "'outcom'"),
    "repeated-parameter": ("/entries?outcome=ALLOW&outcome=BLOCK", 400, "'outcome'"),
    "verify-takes-none": ("/verify?trusted_checkpoint=/tmp/x", 400, "'trusted_checkpoint'"),
    "long-event-id": ("/proof/" + "e" * 300, 422, "event_id"),
}


@pytest.mark.parametrize(("url", "status", "name"), BAD_PARAMETERS.values(), ids=BAD_PARAMETERS)
def test_bad_parameters_are_refused_naming_the_parameter(
    storeless: TestClient, url: str, status: int, name: str
) -> None:
    response = storeless.get(url, headers={"Authorization": f"Bearer {TOKEN}"})

    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    if status == 422:
        assert [error["loc"][-1] for error in detail] == [name]
    else:
        assert name in detail


# -- hardening (issue #16) ------------------------------------------------------------------


@sqlite_only
@pytest.mark.parametrize(
    "query",
    [
        "from=0001-01-01T00:00:00%2B01:00&to=2026-01-01T00:00:00Z",
        "from=2026-01-01T00:00:00Z&to=9999-12-31T23:59:59-01:00",
    ],
)
def test_an_instant_beyond_utcs_years_is_a_400_not_a_500(served: Served, query: str) -> None:
    response = served.client.get(
        f"/transparency-report?{query}", headers={"Authorization": f"Bearer {TOKEN}"}
    )

    assert response.status_code == 400, response.text
    assert "outside the years 1 to 9999" in response.json()["detail"]
    assert response.headers["Cache-Control"] == "no-store"


@sqlite_only
def test_a_500_carries_the_security_headers(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise OverflowError("date value out of range")

    monkeypatch.setattr(http_api, "read_report", broken)
    client = TestClient(served.app, raise_server_exceptions=False)
    response = client.get(
        "/transparency-report?from=2026-01-01T00:00:00Z&to=2027-01-01T00:00:00Z",
        headers={"Authorization": f"Bearer {TOKEN}"},
    )

    assert (response.status_code, response.json()) == (500, {"detail": "internal error"})
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value


def test_a_422_names_the_parameter_without_echoing_its_value(storeless: TestClient) -> None:
    secret = "acct-" + "s" * 300
    response = storeless.get(
        "/entries", params={"account": secret}, headers={"Authorization": f"Bearer {TOKEN}"}
    )

    assert response.status_code == 422
    assert secret not in response.text
    assert "input" not in response.json()["detail"][0]


def test_the_token_comes_before_the_body_and_a_large_body_is_refused_unread(
    storeless: TestClient,
) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    unauthenticated = storeless.request("GET", "/verify", content=b"{not json" * 100)
    large = storeless.request("GET", "/verify", content=b"x" * 50_000, headers=auth)
    twice = storeless.get("/verify", headers=[("authorization", auth["Authorization"])] * 2)

    assert unauthenticated.status_code == 401
    assert large.status_code == 413
    assert str(http_api.MAX_BODY_BYTES) in large.json()["detail"]
    assert twice.status_code == 400
    assert all(r.headers["X-Content-Type-Options"] == "nosniff" for r in (large, twice))


def test_no_redirect_reflects_the_host_header(storeless: TestClient) -> None:
    response = storeless.get(
        "/entries/",
        headers={"Authorization": f"Bearer {TOKEN}", "host": "evil.example"},
        follow_redirects=False,
    )

    assert response.status_code == 404
    assert "evil.example" not in response.headers.get("location", "")


def test_a_plus_sent_raw_in_an_instant_gets_a_hint(storeless: TestClient) -> None:
    response = storeless.get(
        "/entries?from=2026-11-01T12:00:00+01:00", headers={"Authorization": f"Bearer {TOKEN}"}
    )

    assert "%2B" in response.json()["detail"]


@sqlite_only
def test_an_account_search_without_the_index_key_is_a_clear_400(served: Served) -> None:
    settings = served.settings.model_copy(update={"index_key": None})
    client = TestClient(create_app(settings, token=TOKEN))
    headers = {"Authorization": f"Bearer {TOKEN}"}

    by_account = client.get("/entries", params={"account": "acct-1"}, headers=headers)
    others = client.get("/entries", params={"outcome": "ALLOW"}, headers=headers)

    assert by_account.status_code == 400
    assert "'account'" in by_account.json()["detail"]
    assert "index key" in by_account.json()["detail"]
    assert [row["index"] for row in others.json()] == [1, 3, 5, 7, 9, 11]


# -- /verify, /proof, /checkpoint ---------------------------------------------------------------


def test_verify_reports_an_intact_log(served: Served) -> None:
    response = served.get("/verify")

    assert response.status_code == 200
    body = response.json()
    # The OpenAPI schema is the real one (the last four are a sharded trail's only).
    assert set(body) == set(VerifyBody.model_fields) - {
        "sharded",
        "heads_verified",
        "latest_heads",
        "members",
    }
    assert (body["ok"], body["size"], body["erased"], body["unsigned_tail"]) == (
        True,
        SIZE,
        len(ERASED),
        SIZE - SIGNED,
    )
    assert (body["first_bad_index"], body["first_problem"], body["problems"]) == (None, None, [])
    expected = served.backend.verify().to_dict()
    assert {k: v for k, v in body.items() if k in expected} == expected


def _flip_leaf_byte(backend: Backend, index: int) -> None:
    backend.disable_triggers("leaves")
    (leaf,) = backend.owner("SELECT leaf FROM leaves WHERE idx = ?", [index])[0]
    leaf = bytes(leaf)
    backend.owner(
        "UPDATE leaves SET leaf = ? WHERE idx = ?",
        [leaf[:-2] + bytes([leaf[-2] ^ 1]) + leaf[-1:], index],
    )


def _drop_payload(backend: Backend, index: int) -> None:
    backend.disable_triggers("payloads")
    backend.owner("DELETE FROM payloads WHERE idx = ?", [index])


TAMPERING = {
    "leaf-byte": (_flip_leaf_byte, 6, "leaf-hash-mismatch"),
    "payload-deleted": (_drop_payload, 4, "payload-missing"),
}


@pytest.mark.parametrize(("tamper", "index", "code"), TAMPERING.values(), ids=TAMPERING)
def test_verify_reports_the_first_bad_entry_after_tampering(
    served: Served, tamper: Any, index: int, code: str
) -> None:
    tamper(served.backend, index)

    response = served.get("/verify")

    assert response.status_code == 200  # the body says whether the log is intact
    body = response.json()
    assert (body["ok"], body["first_bad_index"], body["first_problem"]["code"]) == (
        False,
        index,
        code,
    )
    assert body["problem_count"] >= 1
    assert body["problems"][0] == body["first_problem"]


def test_proof_gives_a_bundle_the_offline_verifier_accepts(served: Served) -> None:
    response = served.get("/proof/evt-000004")

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    bundle = response.text
    leaf = parse_proof_bundle(bundle).extra
    assert leaf is not None
    verify_proof_bundle(bundle, leaf, [served.backend.verifier], served.backend.origin)
    proven = open_proof_bundle(bundle, leaf, [served.backend.verifier], served.backend.origin)
    assert (proven.index, proven.checkpoint.size) == (4, SIGNED)
    assert decode_leaf(leaf).body["event_id"] == "evt-000004"
    (stored,) = served.backend.owner("SELECT leaf FROM leaves WHERE idx = ?", [4])[0]
    assert leaf == bytes(stored)


@pytest.mark.parametrize(
    ("event_id", "message"),
    [
        ("evt-999999", "no record of that event"),
        ("evt-000013", "entry 13 is not covered by a signed checkpoint yet"),
        ("evt-000014", "entry 14 is not covered by a signed checkpoint yet"),
    ],
)
def test_proof_of_an_unknown_or_unsigned_event_is_404(
    served: Served, event_id: str, message: str
) -> None:
    response = served.get(f"/proof/{event_id}")

    assert response.status_code == 404
    assert message in response.json()["detail"]


def test_checkpoint_is_the_latest_signed_note(served: Served) -> None:
    response = served.get("/checkpoint")

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    opened = open_checkpoint(response.text, [served.backend.verifier], origin=served.backend.origin)
    assert opened.size == SIGNED
    assert response.text == CheckpointArchive(served.backend.archive_dir).read(SIGNED)


def test_a_store_that_does_not_prove_its_entry_is_409_never_a_bad_proof(served: Served) -> None:
    _flip_leaf_byte(served.backend, 4)

    response = served.get("/proof/evt-000004")

    assert response.status_code == 409
    assert "run verify" in response.json()["detail"]


def test_a_checkpoint_signed_by_another_key_is_409(served: Served) -> None:
    (note,) = served.backend.owner("SELECT note FROM checkpoints WHERE size = ?", [SIGNED])[0]
    genuine = open_checkpoint(note, [served.backend.verifier], origin=served.backend.origin)
    forger = NoteSigner.generate(served.backend.origin)
    forged = sign_checkpoint(genuine.origin, genuine.size, genuine.root, forger)
    served.backend.disable_triggers("checkpoints")
    served.backend.owner("UPDATE checkpoints SET note = ? WHERE size = ?", [forged, SIGNED])

    for url in ("/checkpoint", "/proof/evt-000004"):
        response = served.get(url)
        assert response.status_code == 409, url
        assert "run /verify" in response.json()["detail"]


def test_a_fresh_log_has_no_checkpoint_and_verifies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AUDIT_SINK_API_TOKEN", raising=False)
    backend = sqlite_backend(tmp_path)
    try:
        backend.store()  # creates the empty log
        settings = AuditSinkSettings(
            origin=backend.origin,
            sqlite=SqliteSettings(log_file=tmp_path / "log.db", keys_file=tmp_path / "keys.db"),
            vkey=backend.verifier.vkey,
        )
        client = TestClient(create_app(settings, token=TOKEN))
        headers = {"Authorization": f"Bearer {TOKEN}"}

        assert client.get("/checkpoint", headers=headers).status_code == 404
        proof = client.get("/proof/evt-000001", headers=headers)
        assert (proof.status_code, proof.json()["detail"]) == (
            404,
            "no record of that event in the log",
        )
        assert client.get("/entries", headers=headers).json() == []
        report = client.get("/verify", headers=headers).json()
        assert (report["ok"], report["size"]) == (True, 0)
    finally:
        backend.close()


def test_an_unreachable_store_is_503(storeless: TestClient) -> None:
    for url in PROTECTED:
        response = storeless.get(url, headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status_code == 503, url
        assert response.json() == {"detail": "the audit store is unavailable"}


# -- logs ----------------------------------------------------------------------------------------


@sqlite_only
def test_neither_the_token_nor_personal_data_reach_the_logs(
    served: Served, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.DEBUG)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    served.get("/entries", account="acct-1", format="csv")
    served.get("/proof/evt-000004")
    served.get("/verify")
    served.client.get("/entries?account=acct-1", headers={"Authorization": f"Bearer {TOKEN}x"})
    served.client.get("/entries?account=acct-1&from=acct-1", headers=headers)

    message = f"failed for acct-1 with {TOKEN}"  # out of the traceback's source lines

    def leaky(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError(message)

    monkeypatch.setattr(http_api, "query_trail", leaky)
    failed = served.get("/entries", account="acct-1")

    assert (failed.status_code, failed.json()) == (500, {"detail": "internal error"})
    server = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    logged = "\n".join(f"{r.getMessage()} {r.args!r} {r.exc_text}" for r in server)
    assert TOKEN not in logged
    assert TOKEN[: len(TOKEN) // 2] not in logged
    assert "acct-1" not in logged
    assert "evt-000004" not in logged
    assert "GET /entries 200" in logged
    assert "GET /proof/{event_id} 200" in logged
    assert "GET /entries 401" in logged
    assert "RuntimeError" in logged  # the failure is logged, by type and frames


# -- the real server -------------------------------------------------------------------------

SERVER = """
import sys
from pydantic import SecretStr
from audit_sink.http_api import serve
from audit_sink.settings import AuditSinkSettings

class WithToken(AuditSinkSettings):  # until settings.py has the field
    api_token: SecretStr | None = None

sys.exit(serve(WithToken(), "127.0.0.1", int(sys.argv[1])))
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@sqlite_only
def test_serve_answers_concurrent_requests_and_stops_on_sigterm(served: Served) -> None:
    settings = served.settings
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDIT_SINK_")}
    env |= {
        "AUDIT_SINK_ORIGIN": served.backend.origin,
        "AUDIT_SINK_BACKEND": "sqlite",
        "AUDIT_SINK_DATA_DIR": str(settings.data_dir),
        "AUDIT_SINK_SQLITE__LOG_FILE": str(settings.log_file()),
        "AUDIT_SINK_SQLITE__KEYS_FILE": str(settings.keys_file()),
        "AUDIT_SINK_VKEY": settings.vkey or "",
        "AUDIT_SINK_INDEX_KEY": settings.index_key.get_secret_value() if settings.index_key else "",
        "AUDIT_SINK_API_TOKEN": TOKEN,
    }
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    try:
        deadline = time.monotonic() + 30
        while True:
            assert server.poll() is None, server.communicate()
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)

        def fetch(url: str) -> tuple[int, str]:
            response = httpx.get(base + url, headers=headers, timeout=30)
            return response.status_code, response.text

        urls = ["/entries?account=acct-1", "/proof/evt-000004", "/verify", "/checkpoint"] * 8
        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(pool.map(fetch, urls))
        unauthorised = httpx.get(f"{base}/verify", timeout=10)
    finally:
        server.send_signal(signal.SIGTERM)
        _, stderr = server.communicate(timeout=30)

    assert server.returncode == 0, stderr
    assert {status for status, _ in answers} == {200}
    first = json.loads(answers[0][1])
    assert [row["index"] for row in first] == [1, 4, 7, 10, 13]
    assert all(
        json.loads(text)["ok"]
        for url, (_, text) in zip(urls, answers, strict=True)
        if url == "/verify"
    )
    assert unauthorised.status_code == 401
    assert "server" not in unauthorised.headers  # uvicorn does not announce itself
    assert "GET /entries 200" in stderr
    assert "GET /verify 401" in stderr
    assert TOKEN not in stderr
    assert "acct-1" not in stderr
    assert "evt-000004" not in stderr


@sqlite_only
def test_serve_returns_2_when_it_cannot_listen(served: Served) -> None:
    settings = served.settings.model_copy(update={"api_token": SecretStr(TOKEN)})
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = int(taken.getsockname()[1])

        assert serve(settings, "127.0.0.1", port) == 2
