"""The audit trail over HTTP (``audit-sink serve``): read-only, behind one bearer token.

The security team's tools get the same answers as the command line, from the same plain
functions: ``GET /entries`` (:func:`~audit_sink.query.query_entries`, rendered like
``query``), ``GET /verify`` (:func:`~audit_sink.verification.verify_log` against the stored
checkpoints and the pinned key), ``GET /proof/{event_id}`` (a C2SP tlog-proof bundle,
:func:`~audit_sink.proofs.prove_event`), ``GET /checkpoint`` (the latest signed checkpoint),
``GET /transparency-report`` (:mod:`audit_sink.transparency`, as ``report``), and for the
security console (:mod:`audit_sink.http_console`, which also serves the console's static page
at ``/console/``): ``POST /entries/search`` (the ``/entries`` criteria in a JSON body, so that
an account id never travels in a URL), ``GET /entries/{event_id}`` (one decision, its reasons
in words), ``GET /status`` and ``GET /export`` (a tar.gz of ``audit-sink export``);
``GET /healthz`` and ``GET /metrics`` (Prometheus text: requests by method, route template
and status, counted and timed through the edge's ``observe`` hook, and verifications by
result; :mod:`audit_sink.api_metrics`). FastAPI serves the OpenAPI description at
``/openapi.json``, with the bearer scheme declared; the interactive pages (``/docs``,
``/redoc``) are off because they load scripts from a CDN into a page where the token is typed.

:func:`create_app` builds the application and does no I/O. Each request opens the store
read-only (and the key store, for ``/entries``) through :mod:`audit_sink.bootstrap`, as the
command line does, and closes it before answering: SQLite connections belong to one thread,
and FastAPI runs these endpoints in a thread pool. Verifications run one at a time.

Every route but ``/healthz``, ``/metrics`` (and ``/openapi.json``) needs ``Authorization: Bearer
<token>``, checked by the shared HTTP edge (:mod:`sharing_guard.edge.asgi`) before anything of
the request is validated or read; the token is compared in constant time
(:func:`hmac.compare_digest` over SHA-256 digests, which also hides its length) and is never
logged. The edge also refuses a body over :data:`MAX_BODY_BYTES` (413), two ``Authorization``
headers (400), and puts the security headers on every response, errors included. The token
holder reads what ``query`` shows: decrypted account ids and event JSON where the subject's key
still exists. Logs carry one line per request with the method, the route *template*, the status
and the time: never a query string (which may name an account), a header or a body. An
unexpected error is logged by type and stack frames only, never its message, and answered 500; a
store that cannot be reached is answered 503.

Status codes: 200; 400 two ``Authorization`` headers, or a parameter the validation cannot
express (an instant without a time zone, an unknown or repeated parameter, an account search
without the index key); 401 no or wrong token; 404 no such event, or not covered by a
checkpoint yet; 409 the store does not prove what it holds (run ``/verify``); 422 a parameter
of the wrong type or range; 503 the store is unavailable; 413 a body over the limit. Errors are
``{"detail": ...}``: a message, or for 422 a list naming each bad parameter's location and rule
(never the value sent).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import re
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal, cast

import psycopg
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field, SecretStr
from sharing_guard.contract.enums import Clause
from sharing_guard.edge import logsafe
from sharing_guard.edge.asgi import Edge, EdgePolicy, UnauthorizedError
from sharing_guard.edge.params import only
from sharing_guard.edge.server import StoppableServer

from audit_sink import bootstrap
from audit_sink.api_metrics import ApiMetrics
from audit_sink.checkpoint import NoteVerifier
from audit_sink.heads import HeadsError, member_verifier
from audit_sink.keystore import KeyStore
from audit_sink.proofs import ProofError, prove_event, signed_head
from audit_sink.query import EntryView, InstantError, QueryCriteria, parse_instant
from audit_sink.render import render
from audit_sink.sealing import IndexKey
from audit_sink.settings import AuditSinkSettings, SettingsError
from audit_sink.store import LogReader, StoreError
from audit_sink.trail_read import MemberReader, latest_heads_note, member_readers, query_trail
from audit_sink.trail_verify import TrailReport, verify_trail
from audit_sink.trail_views import search_trail
from audit_sink.transparency import Period, read_report, render_table
from audit_sink.verify import Report

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_LIMIT",
    "DEFAULT_PORT",
    "ENTRY_PARAMETERS",
    "MAX_LIMIT",
    "MIN_TOKEN_LENGTH",
    "api_token",
    "create_app",
    "serve",
]

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 8088
DEFAULT_LIMIT: Final = 1000
MAX_LIMIT: Final = 10000
MIN_TOKEN_LENGTH: Final = 32
ENTRY_PARAMETERS: Final = frozenset(
    (
        "account",
        "recipient",
        "outcome",
        "reason",
        "clause",
        "order_ref",
        "from",
        "to",
        "limit",
        "format",
    )
)
TRUNCATED_HEADER: Final = "Audit-Sink-Truncated"
MAX_BODY_BYTES: Final = 8192
"""Every route but ``POST /entries/search`` (a small JSON body of criteria) is a GET: a large
body is refused unread (413)."""
PUBLIC_PATHS: Final = frozenset(("/healthz", "/metrics", "/openapi.json", "/console"))
"""No token: health, metrics, the description, and ``/console`` (a redirect to the page)."""
CONSOLE_PAGES: Final = ("/console/",)
"""The console's static files (no data, no token; the page's own CSP: the shared edge)."""

_EXIT_OK, _EXIT_CANNOT_RUN = 0, 2
_MAX_TEXT: Final = 256
_TOKEN_SYNTAX: Final = re.compile(r"[A-Za-z0-9\-._~+/]+=*")  # RFC 6750 b64token
_REALM: Final = 'Bearer realm="audit-sink"'
_MEDIA_TYPES: Final = {
    "json": "application/json",
    "jsonl": "application/x-ndjson",
    "csv": "text/csv",
}
_STORE_ERRORS: Final = (StoreError, SettingsError, OSError, sqlite3.Error, psycopg.Error)
_SAFE_MESSAGES: Final = (StoreError, SettingsError)  # written to be shown (the CLI prints them)

logger = logging.getLogger("audit_sink.http")


# -- what the OpenAPI description shows ------------------------------------------------------


class Health(BaseModel):
    """``/healthz``: the process answers (it does not touch the store)."""

    ok: bool


class EntryBody(BaseModel):
    """One record entry: the fields of ``query --format jsonl`` (``EntryView.to_dict``)."""

    index: int
    kind: str = Field(description="DECISION or GOVERNANCE_CHANGE")
    audit_id: str
    event_id: str
    event_type: str
    occurred_at: str = Field(description="RFC 3339, UTC, milliseconds")
    personal: Literal["clear", "opened", "erased", "unavailable"]
    account_id: str | None = Field(description="decrypted, or <erased> / <unavailable>")
    recipient_id: str | None
    order_ref: str | None
    actor: str | None
    outcome: str | None
    reasons: list[str]
    policy_version: str | None
    event_json: str | None = Field(description="decrypted, or <erased> / <unavailable>")
    shard: int | None = Field(
        default=None,
        description="sharded trail only: the partition of the shard holding the entry (null: "
        "the single log kept from before the shards); `index` counts within that member",
    )


class ProblemBody(BaseModel):
    """One finding of a verification (the message never holds personal data)."""

    code: str
    index: int | None
    range_end: int | None
    checkpoint_size: int | None
    bound: bool
    message: str
    member: str | None = Field(
        default=None,
        description="sharded trail only: which log (`shard 3`, `log`, or `trail` for the heads "
        "notes); `index` counts within it",
    )


class VerifyBody(BaseModel):
    """The verification report of ``verify --json``, plus the first problem on top."""

    ok: bool
    size: int
    erased: int
    checkpoints_verified: int
    latest_checkpoint_size: int | None
    trusted_checkpoint_sizes: list[int]
    unsigned_tail: int
    problem_count: int
    problems: list[ProblemBody]
    first_bad_index: int | None = Field(description="the first bad entry; null when ok")
    first_problem: ProblemBody | None
    sharded: bool = Field(
        default=False,
        description="a sharded trail: the figures above are summed over its member logs, "
        "each problem names its member, and `members` holds each member's own report",
    )
    heads_verified: int | None = None
    latest_heads: int | None = Field(default=None, description="the latest heads note's number")
    members: list[dict[str, Any]] | None = None


_ERROR_SCHEMA: Final = {
    "type": "object",
    "properties": {"detail": {"type": "string"}},
    "required": ["detail"],
}


def _error(description: str) -> dict[str, Any]:
    """An error response in the OpenAPI description: JSON on every route, text ones too."""
    return {"description": description, "content": {"application/json": {"schema": _ERROR_SCHEMA}}}


_ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    400: _error("A parameter is not acceptable, or unknown, or repeated (the message names it)."),
    401: _error("No bearer token, or not the right one."),
    503: _error("The store cannot be reached."),
}
_NOT_PROVEN: Final = _error("The store does not prove it (tampered or inconsistent): run /verify.")


# -- the application -----------------------------------------------------------------------


class Verifications:
    """The last verification this server ran (``/verify``), in memory: ``/status`` shows
    when, whether it passed, and its first problem."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: dict[str, Any] | None = None

    def record(self, body: Mapping[str, Any]) -> None:
        """Keep the summary of a verification report (the body ``/verify`` answered)."""
        summary = {
            "at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "ok": bool(body["ok"]),
            "size": body["size"],
            "problem_count": body["problem_count"],
            "first_problem": body["first_problem"],
        }
        with self._lock:
            self._last = summary

    def last(self) -> dict[str, Any] | None:
        """The summary of the last verification, ``None`` before the first."""
        with self._lock:
            return None if self._last is None else dict(self._last)


@dataclass(frozen=True)
class _Service:
    """What the endpoints share: settings, pinned key, index key, token digest, a lock,
    the metrics."""

    settings: AuditSinkSettings = field(repr=False)
    origin: str
    verifier: NoteVerifier = field(repr=False)
    index_key: IndexKey | None = field(repr=False)
    token_digest: bytes = field(repr=False)
    verifying: threading.Lock = field(default_factory=threading.Lock, repr=False)
    metrics: ApiMetrics = field(default_factory=ApiMetrics, repr=False)
    verifications: Verifications = field(default_factory=Verifications, repr=False)


def _check_token(token: str) -> None:
    if len(token) < MIN_TOKEN_LENGTH:
        raise SettingsError(
            f"the API token must be at least {MIN_TOKEN_LENGTH} characters "
            "(e.g. audit-sink keygen --index-key prints a random one)"
        )
    if not _TOKEN_SYNTAX.fullmatch(token):
        raise SettingsError(
            "the API token may hold only letters, digits and - . _ ~ + / (then = padding)"
        )


def api_token(settings: AuditSinkSettings) -> str:
    """The API token of the settings (``SettingsError`` if unset or empty)."""
    # ``getattr``: the ``api_token`` field is added to AuditSinkSettings alongside this module.
    secret = getattr(settings, "api_token", None)
    if not isinstance(secret, SecretStr) or not secret.get_secret_value():
        raise SettingsError("set AUDIT_SINK_API_TOKEN: serve refuses to start without a token")
    return secret.get_secret_value()


def create_app(settings: AuditSinkSettings, *, token: str) -> FastAPI:
    """The HTTP API over the configured log; nothing is opened until a request comes.

    Raises ``SettingsError`` now for what would fail every request: no origin, no pinned
    key (``AUDIT_SINK_VKEY``), an invalid index key, a token shorter than
    :data:`MIN_TOKEN_LENGTH` or not RFC 6750 syntax. Without an index key the API runs, and
    searches by account are refused (400).
    """
    _check_token(token)
    service = _Service(
        settings=settings,
        origin=settings.require_origin(),
        verifier=bootstrap.pinned_verifier(settings),
        index_key=None if settings.index_key is None else bootstrap.index_key(settings),
        token_digest=hashlib.sha256(token.encode("utf-8")).digest(),
    )
    app = FastAPI(
        title="audit-sink",
        version="1",
        summary="The tamper-evident audit trail of sharing-guard, read-only.",
        description=(
            "Send `Authorization: Bearer <token>` on every route but `/healthz`. "
            "The token holder sees decrypted personal fields as `audit-sink query` shows "
            "them. See docs/audit-trail.md, section 'HTTP API'."
        ),
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.audit_sink = service
    app.router.redirect_slashes = False  # a redirect would echo the Host header
    app.add_middleware(
        Edge,
        policy=EdgePolicy(
            max_body_bytes=MAX_BODY_BYTES,
            authenticate=_authenticate(service.token_digest),
            public_paths=PUBLIC_PATHS,
            logger=logger,
            observe=service.metrics.http.observe,
            pages=CONSOLE_PAGES,
        ),
    )
    app.add_exception_handler(RequestValidationError, _invalid)
    from audit_sink import http_console  # it builds on this module's routes and helpers

    app.include_router(_public)
    app.include_router(http_console.pages)
    app.include_router(_protected)
    app.include_router(http_console.router)
    return app


async def _invalid(request: Request, exc: Exception) -> JSONResponse:
    """422 naming each bad parameter by location and rule, never echoing the value sent."""
    assert isinstance(exc, RequestValidationError)
    problems = [
        {"loc": list(err.get("loc", ())), "msg": err.get("msg", ""), "type": err.get("type")}
        for err in exc.errors()
    ]
    return JSONResponse({"detail": problems}, status_code=422)


def _service(request: Request) -> _Service:
    return cast(_Service, request.app.state.audit_sink)


Service = Annotated[_Service, Depends(_service)]

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearerAuth",
    description="The API token (AUDIT_SINK_API_TOKEN of the server).",
)


def _authenticate(token_digest: bytes) -> Callable[[str | None], None]:
    """The edge's check of the ``Authorization`` header: the right bearer token, compared in
    constant time; it runs before anything of the request is validated or read."""

    def check(header: str | None) -> None:
        scheme, _, token = (header or "").partition(" ")
        if not header or scheme.lower() != "bearer" or not token.strip():
            raise UnauthorizedError("send Authorization: Bearer <token>", _REALM)
        presented = hashlib.sha256(token.strip().encode("utf-8", "replace")).digest()
        if not hmac.compare_digest(presented, token_digest):
            raise UnauthorizedError(
                "the bearer token is not valid", f'{_REALM}, error="invalid_token"'
            )

    return check


async def _authorised(
    request: Request,
    _: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
) -> None:
    """Declares the bearer scheme in the OpenAPI description; the edge (:class:`Edge`)
    checked the token before the request got here."""
    if "principal" not in request.scope.get("state", {}):  # a route the edge did not guard
        raise HTTPException(401, "send Authorization: Bearer <token>")


_public = APIRouter()
_protected = APIRouter(dependencies=[Depends(_authorised)], responses=_ERRORS)


@_public.get("/healthz", response_model=Health, summary="Liveness (no token, no store)")
async def healthz() -> dict[str, bool]:
    """The process answers; it does not open the store."""
    return {"ok": True}


@_public.get("/metrics", include_in_schema=False, dependencies=[Depends(only())])
def metrics(service: Service) -> Response:
    """The Prometheus text of the API's metrics (no token: it holds no personal data)."""
    return service.metrics.render()


@contextmanager
def _unavailable_on_store_errors() -> Iterator[None]:
    """A store that cannot be opened or read answers 503 (logged without driver messages)."""
    try:
        yield
    except _STORE_ERRORS as exc:
        logger.warning(
            "the store is unavailable: %s",
            exc if isinstance(exc, _SAFE_MESSAGES) else type(exc).__name__,
        )
        raise HTTPException(503, "the audit store is unavailable") from None


@contextmanager
def _reading(service: _Service) -> Iterator[LogReader]:
    """One read-only snapshot of the log, on a store opened for this request only."""
    with _unavailable_on_store_errors():
        store = bootstrap.open_store(service.settings, write=False)
        try:
            with store.reader() as reader:
                yield reader
        finally:
            store.close()


@contextmanager
def _trail_reading(service: _Service) -> Iterator[list[MemberReader]]:
    """A read-only snapshot of every member log, on stores opened for this request only."""
    with _unavailable_on_store_errors(), member_readers(service.settings) as readers:
        yield readers


@contextmanager
def _keys(service: _Service) -> Iterator[KeyStore]:
    """The key store, opened for this request only."""
    with _unavailable_on_store_errors():
        keys = bootstrap.open_keystore(service.settings)
        try:
            yield keys
        finally:
            keys.close()


def _instant(text: str | None, name: str) -> datetime | None:
    try:
        return parse_instant(text)
    except InstantError as exc:
        hint = " (in a URL, write + as %2B)" if text is not None and " " in text else ""
        raise HTTPException(400, f"{name!r} {exc}, e.g. 2026-11-01T00:00:00Z{hint}") from None


_Text = Annotated[str | None, Query(min_length=1, max_length=_MAX_TEXT)]


@dataclass(frozen=True)
class Search:
    """The criteria of ``/entries`` and ``POST /entries/search``, as sent (text)."""

    account: str | None = None
    recipient: str | None = None
    outcome: str | None = None
    reason: str | None = None
    clause: Clause | None = None
    order_ref: str | None = None
    occurred_from: str | None = None
    occurred_to: str | None = None
    limit: int = DEFAULT_LIMIT


def search(service: _Service, wanted: Search) -> tuple[list[EntryView], bool]:
    """The entries matching ``wanted`` (at most its limit), and whether the limit cut the
    list; 400 for an account search without the index key, or an instant without a zone."""
    if wanted.account is not None and service.index_key is None:
        raise HTTPException(
            400,
            "'account': searching by account needs the index key, and this server has none "
            "(AUDIT_SINK_INDEX_KEY)",
        )
    criteria = QueryCriteria(
        account_id=wanted.account,
        recipient_id=wanted.recipient,
        outcome=wanted.outcome,
        reason_code=wanted.reason,
        order_ref=wanted.order_ref,
        occurred_from=_instant(wanted.occurred_from, "from"),
        occurred_to=_instant(wanted.occurred_to, "to"),
    )
    with _keys(service) as keys, _trail_reading(service) as readers:
        return search_trail(
            service.settings,
            readers,
            keys,
            criteria,
            limit=wanted.limit,
            clause=wanted.clause,
            index_key=service.index_key,
            query=query_trail,
        )


def entries_json(views: list[EntryView], truncated: bool) -> Response:
    """The JSON answer of ``/entries``: an array of entries, the truncation header."""
    rows = [view.to_dict() for view in views]
    return Response(
        json.dumps(rows, ensure_ascii=False, sort_keys=True),
        media_type=_MEDIA_TYPES["json"],
        headers={TRUNCATED_HEADER: "true" if truncated else "false"},
    )


@_protected.get(
    "/entries",
    summary="Decisions and governance changes, filtered as `audit-sink query`",
    dependencies=[Depends(only(*ENTRY_PARAMETERS))],
    response_model=list[EntryBody],
    responses={
        200: {
            "description": f"By index (a sharded trail: by time, then shard, then index). "
            f"Header {TRUNCATED_HEADER}: true when `limit` cut the list.",
            "content": {
                "application/x-ndjson": {"schema": {"type": "string"}},
                "text/csv": {"schema": {"type": "string"}},
            },
        },
    },
)
def entries(
    *,
    service: Service,
    account: Annotated[
        str | None,
        Query(min_length=1, max_length=_MAX_TEXT, description="Account id (needs the index key)"),
    ] = None,
    recipient: _Text = None,
    outcome: Annotated[Literal["ALLOW", "BLOCK"] | None, Query()] = None,
    reason: Annotated[
        str | None,
        Query(
            min_length=1, max_length=_MAX_TEXT, description="A reason code, e.g. CONSENT_MISSING"
        ),
    ] = None,
    clause: Annotated[
        Clause | None,
        Query(description="A policy clause, e.g. C-VDD-NO-SHARING: a reason names it"),
    ] = None,
    order_ref: _Text = None,
    occurred_from: Annotated[
        str | None,
        Query(alias="from", max_length=64, description="RFC 3339 instant with zone, inclusive"),
    ] = None,
    occurred_to: Annotated[
        str | None,
        Query(alias="to", max_length=64, description="RFC 3339 instant with zone, exclusive"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    output: Annotated[Literal["json", "jsonl", "csv"], Query(alias="format")] = "json",
) -> Response:
    """The record entries matching every given filter, by index, at most ``limit``."""
    wanted = Search(
        account=account,
        recipient=recipient,
        outcome=outcome,
        reason=reason,
        clause=clause,
        order_ref=order_ref,
        occurred_from=occurred_from,
        occurred_to=occurred_to,
        limit=limit,
    )
    views, truncated = search(service, wanted)
    if output == "json":
        return entries_json(views, truncated)
    return Response(
        render(views, output),
        media_type=_MEDIA_TYPES[output],
        headers={TRUNCATED_HEADER: "true" if truncated else "false"},
    )


def _report_body(report: Report) -> dict[str, Any]:
    body = report.to_dict()
    first = report.first
    body["first_bad_index"] = None if first is None else first.index
    body["first_problem"] = None if first is None else first.to_dict()
    return body


def _trail_body(trail: TrailReport) -> dict[str, Any]:
    """A sharded trail's report in the shape of one log's, summed, problems named by member."""
    problems: list[dict[str, Any]] = [
        {
            "code": p.code,
            "index": None,
            "range_end": None,
            "checkpoint_size": None,
            "bound": False,
            "message": p.message,
            "member": p.member or "trail",
        }
        for p in trail.problems
    ]
    for member in trail.members:
        label = member.member.label
        problems.extend({**p.to_dict(), "member": label} for p in member.report.problems)
    reports = [m.report for m in trail.members]
    return {
        "ok": trail.ok,
        "size": trail.size,
        "erased": sum(r.erased for r in reports),
        "checkpoints_verified": sum(r.checkpoints_verified for r in reports),
        "latest_checkpoint_size": None,
        "trusted_checkpoint_sizes": [],
        "unsigned_tail": sum(r.unsigned_tail for r in reports),
        "problem_count": trail.problem_count,
        "problems": problems,
        "first_bad_index": problems[0]["index"] if problems else None,
        "first_problem": problems[0] if problems else None,
        "sharded": True,
        "heads_verified": trail.heads_verified,
        "latest_heads": trail.latest_heads,
        "members": [m.to_dict() for m in trail.members],
    }


@_protected.get(
    "/verify",
    summary="Verify the whole log (every shard and the heads notes of a sharded trail) "
    "against its checkpoints and the pinned key",
    dependencies=[Depends(only())],
    response_model=VerifyBody,
)
def verify(service: Service) -> JSONResponse:
    """The verification report; 200 whether the log is intact or not (see ``ok``)."""
    with service.verifying, _unavailable_on_store_errors():
        trail = verify_trail(service.settings, service.verifier, workers=1)
    service.metrics.verified(trail.ok)
    body = _trail_body(trail) if trail.sharded else _report_body(trail.members[0].report)
    service.verifications.record(body)
    return JSONResponse(body)


def _latest_note(reader: LogReader, verifier: NoteVerifier, origin: str) -> tuple[int, str]:
    """The latest checkpoint's size and note, verified (404 when none, 409 when bad)."""
    if not reader.checkpoints():
        raise HTTPException(404, "the log has no signed checkpoint yet")
    try:
        checkpoint, note = signed_head(reader, [verifier], origin)
    except ProofError as exc:
        raise HTTPException(409, f"{exc}: run /verify") from None
    return checkpoint.size, note


@_protected.get(
    "/proof/{event_id:path}",
    summary="C2SP tlog-proof of one decision (else governance change), checkable offline",
    dependencies=[Depends(only())],
    response_class=PlainTextResponse,
    responses={
        404: _error("No record of that event, or not covered by a signed checkpoint yet."),
        409: _NOT_PROVEN,
    },
)
def proof(
    service: Service,
    event_id: Annotated[str, Path(min_length=1, max_length=_MAX_TEXT)],  # any id, "/" too
) -> PlainTextResponse:
    """The proof bundle (its ``extra`` line holds the leaf) under the latest checkpoint of
    the log holding the event (in a sharded trail, its checkpoint's origin names the shard)."""
    with _trail_reading(service) as readers:
        for one in readers:
            reader, origin = one.reader, one.member.origin
            index = reader.find_record(f"DECISION:{event_id}")
            if index is None:
                index = reader.find_record(f"GOVERNANCE_CHANGE:{event_id}")
            if index is not None:
                break
        else:
            raise HTTPException(404, "no record of that event in the log")
        verifier = member_verifier(service.verifier, origin)
        size, _ = _latest_note(reader, verifier, origin)
        if index >= size:
            raise HTTPException(
                404,
                f"entry {index} is not covered by a signed checkpoint yet (latest size {size})",
            )
        try:
            found = prove_event(reader, event_id, trusted_keys=[verifier], origin=origin)
        except ProofError as exc:
            raise HTTPException(409, str(exc)) from None
    return PlainTextResponse(found.bundle)


@_protected.get(
    "/checkpoint",
    summary="The latest signed checkpoint (C2SP signed note)",
    dependencies=[Depends(only())],
    response_class=PlainTextResponse,
    responses={404: _error("The log has no signed checkpoint yet."), 409: _NOT_PROVEN},
)
def checkpoint(service: Service) -> PlainTextResponse:
    """The note as stored, after checking its signature with the pinned key: the latest
    checkpoint of a single log, the latest heads note of a sharded trail (which commits to
    every shard's head)."""
    if service.settings.sharding == "partition":
        with _unavailable_on_store_errors():
            try:
                heads = latest_heads_note(service.settings, service.verifier)
            except HeadsError as exc:
                raise HTTPException(409, f"the latest heads note does not verify: {exc}") from None
        if heads is None:
            raise HTTPException(404, "the log has no signed checkpoint yet")
        return PlainTextResponse(heads.note)
    with _reading(service) as reader:
        _, note = _latest_note(reader, service.verifier, service.origin)
    return PlainTextResponse(note)


@_protected.get(
    "/transparency-report",
    summary="Law-enforcement orders and disclosures of a period, as `audit-sink report`",
    dependencies=[Depends(only("from", "to", "format"))],
    responses={
        200: {
            "description": "JSON (the default) or, with format=table, the readable table.",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
    },
)
def transparency_report(
    *,
    service: Service,
    period_from: Annotated[
        str, Query(alias="from", max_length=64, description="RFC 3339 instant, inclusive")
    ],
    period_to: Annotated[
        str, Query(alias="to", max_length=64, description="RFC 3339 instant, exclusive")
    ],
    output: Annotated[Literal["json", "table"], Query(alias="format")] = "json",
) -> Response:
    """Counts of orders and of requests under them (:mod:`audit_sink.transparency`)."""
    start, end = _instant(period_from, "from"), _instant(period_to, "to")
    if start is None or end is None:
        raise HTTPException(400, "'from' and 'to' are required")
    try:
        period = Period(start, end)
    except ValueError as exc:
        raise HTTPException(400, f"'to': {exc}") from None
    with _trail_reading(service) as readers:
        report = read_report([one.reader for one in readers], period)
    if output == "table":
        return PlainTextResponse(render_table(report))
    return JSONResponse(report.to_dict())


# -- the server ------------------------------------------------------------------------------


def _probe(settings: AuditSinkSettings) -> None:
    """Open every member log read-only and the key store once, so that serve fails at
    start (a sharded trail with no shard yet is fine: they come with the first records)."""
    with member_readers(settings):
        bootstrap.open_keystore(settings).close()


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(settings: AuditSinkSettings, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> int:
    """Serve the API with uvicorn until SIGINT or SIGTERM; the exit status (0, or 2 when
    it could not listen).

    Refuses to start without a token (``AUDIT_SINK_API_TOKEN``) or a pinned key
    (``SettingsError``), or when the store does not open (``StoreError``). There is no TLS
    here: bind to loopback (the default) behind a TLS-terminating proxy; a warning is logged
    for any other address.
    """
    import uvicorn

    if not 0 < port < 65536:
        raise SettingsError("the port must be 1 to 65535")
    app = create_app(settings, token=api_token(settings))
    _probe(settings)
    logsafe.configure(logging.INFO)
    if not _is_loopback(host):
        logger.warning(
            "listening on %s without TLS: the token and personal data cross the network in "
            "clear unless a TLS-terminating proxy is in front",
            host,
        )
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,  # the root logger above; uvicorn's own config would add an access log
        access_log=False,  # its lines carry the query string, which may name an account
        server_header=False,
    )
    server = StoppableServer(config)  # SIGINT or SIGTERM: a graceful stop, then 0
    try:
        server.run()
    except SystemExit:  # uvicorn exits when it cannot listen (it logged why)
        return _EXIT_CANNOT_RUN
    return _EXIT_OK if server.started else _EXIT_CANNOT_RUN
