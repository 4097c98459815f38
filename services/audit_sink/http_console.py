"""The security console's routes on the audit API: its static page, and the JSON it reads.

The page (``console/``: ``index.html``, ``console.js``, ``verify.js``, ``console.css``, an icon, and
``words.json`` built from :mod:`audit_sink.words`) is served at ``/console/`` without a
token: it holds no data. The shared edge gives its files the page policy
(:data:`sharing_guard.edge.asgi.PAGE_CSP`: own scripts and styles only, nothing inline, never
framed, Trusted Types required); ``/console`` redirects to ``console/`` (relative: the
``Host`` header is never echoed). These routes are left out of the OpenAPI description.

The JSON routes need the token like every other (the edge checks it first):

* ``POST /entries/search``: the criteria of ``GET /entries`` in a JSON body (unknown keys
  are a 422), so that an account id never travels in a URL, where proxies and browsers
  keep it; the answer is that of ``/entries`` in JSON.
* ``GET /entries/{event_id}``: one decision (else governance change): the entry as
  ``/entries`` shows it, each reason with its code, clause and words, where it is (shard,
  index) and whether a signed checkpoint covers it yet (then ``/proof`` proves it).
* ``GET /status``: the size of every member, its latest stored checkpoint, the latest
  signed note (checkpoint, or heads note of a sharded trail) checked with the pinned key,
  when the newest record it covers occurred, the last verification this server ran, and
  the pinned vkey (the page uses it only when the reviewer pinned none of their own).
* ``GET /export``: ``audit-sink export`` of the whole trail as one ``.tar.gz`` download
  (the ciphertexts of personal fields are left out, as without ``--include-payloads``).
"""

from __future__ import annotations

import json
import shutil
import tarfile
import tempfile
from datetime import UTC, datetime
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Final, Literal

from fastapi import APIRouter, Depends, HTTPException
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from sharing_guard.contract.enums import Clause
from sharing_guard.edge.params import only
from starlette.background import BackgroundTask

from audit_sink.checkpoint import NoteError, open_checkpoint
from audit_sink.heads import HeadsError
from audit_sink.http_api import (
    _ERRORS,
    _MAX_TEXT,
    DEFAULT_LIMIT,
    MAX_LIMIT,
    TRUNCATED_HEADER,
    EntryBody,
    ProblemBody,
    Search,
    Service,
    _authorised,
    _keys,
    _Service,
    _trail_reading,
    _unavailable_on_store_errors,
    entries_json,
    search,
)
from audit_sink.trail import is_sharded
from audit_sink.trail_read import latest_heads_note
from audit_sink.trail_views import export_trail, find_entry, member_status
from audit_sink.words import clause_words, reason_words, vocabulary

__all__ = ["CONSOLE_FILES", "pages", "router"]

CONSOLE_FILES: Final = {
    "index.html": "text/html; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
    "verify.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
    "words.json": "application/json",
    "favicon.svg": "image/svg+xml",
}
"""Every file of the console and its media type; no other name under ``/console/`` exists."""

pages = APIRouter(include_in_schema=False)
router = APIRouter(dependencies=[Depends(_authorised)], responses=_ERRORS)


# -- the page ----------------------------------------------------------------------------------


@cache
def _file(name: str) -> bytes:
    """A file of the page, read once from the installed package (``words.json`` built)."""
    if name == "words.json":
        return json.dumps(vocabulary(), ensure_ascii=False, sort_keys=True).encode("utf-8")
    return files("audit_sink").joinpath("console", name).read_bytes()


@pages.get("/console", dependencies=[Depends(only())])
def console_entry() -> Response:
    """The address without its slash: a relative redirect to the page."""
    return Response(status_code=307, headers={"Location": "console/"})


@pages.get("/console/", dependencies=[Depends(only())])
def console_index() -> Response:
    """The page."""
    return Response(_file("index.html"), media_type=CONSOLE_FILES["index.html"])


@pages.get("/console/{name}", dependencies=[Depends(only())])
def console_file(name: str) -> Response:
    """One of the page's files (404 for any other name)."""
    if name not in CONSOLE_FILES:
        raise HTTPException(404, "no such file")
    return Response(_file(name), media_type=CONSOLE_FILES[name])


# -- search by body ----------------------------------------------------------------------------

_Text = Annotated[str | None, Field(min_length=1, max_length=_MAX_TEXT)]


class SearchBody(BaseModel):
    """The criteria of ``GET /entries`` (all optional, every given one must hold), in a
    body: an account id never goes into a URL. Unknown keys are refused (422)."""

    model_config = ConfigDict(extra="forbid")

    account: _Text = Field(default=None, description="Account id (needs the index key)")
    recipient: _Text = None
    outcome: Literal["ALLOW", "BLOCK"] | None = None
    reason: _Text = Field(default=None, description="A reason code, e.g. CONSENT_MISSING")
    clause: Clause | None = Field(default=None, description="A clause one reason names")
    order_ref: _Text = None
    occurred_from: str | None = Field(
        default=None, alias="from", max_length=64, description="RFC 3339 with zone, inclusive"
    )
    occurred_to: str | None = Field(
        default=None, alias="to", max_length=64, description="RFC 3339 with zone, exclusive"
    )
    limit: int = Field(default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)


@router.post(
    "/entries/search",
    summary="The /entries search with its criteria in a JSON body (no account in a URL)",
    response_model=list[EntryBody],
    responses={200: {"description": f"As /entries (JSON); header {TRUNCATED_HEADER}."}},
)
def entries_search(service: Service, body: SearchBody) -> Response:
    """The entries matching every given criterion, as ``GET /entries`` answers in JSON."""
    views, truncated = search(
        service,
        Search(
            account=body.account,
            recipient=body.recipient,
            outcome=body.outcome,
            reason=body.reason,
            clause=body.clause,
            order_ref=body.order_ref,
            occurred_from=body.occurred_from,
            occurred_to=body.occurred_to,
            limit=body.limit,
        ),
    )
    return entries_json(views, truncated)


# -- one decision ------------------------------------------------------------------------------


class ReasonBody(BaseModel):
    """One reason of a decision, in words."""

    code: str
    clause: str
    text: str = Field(description="what the code means, in plain words")
    clause_text: str = Field(description="what the clause promises, in plain words")


class DetailBody(BaseModel):
    """One record entry, its reasons in words, and where it sits in the trail."""

    entry: EntryBody
    reasons: list[ReasonBody]
    order_ref: str | None
    index: int = Field(description="its leaf index in its member log")
    shard: int | None = Field(description="the partition of its shard (null: a single log)")
    member: str = Field(description="`log` or `shard <p>`")
    origin: str = Field(description="its member log's origin (the checkpoints' key name)")
    checkpoint_size: int | None = Field(description="its member's latest checkpoint size")
    provable: bool = Field(description="a signed checkpoint covers it: /proof proves it")


@router.get(
    "/entries/{event_id:path}",
    summary="One decision (else governance change): reasons in words, where it sits",
    dependencies=[Depends(only())],
    response_model=DetailBody,
    responses={404: {"description": "No record of that event."}},
)
def entry_detail(
    service: Service,
    event_id: Annotated[str, PathParam(max_length=_MAX_TEXT)],
) -> JSONResponse:
    """The entry about ``event_id`` as ``/entries`` shows it, with its reasons explained."""
    if not event_id:  # "/entries/": no such route, as before this one existed
        raise HTTPException(404, "Not Found")
    with _keys(service) as keys, _trail_reading(service) as readers:
        found = find_entry(service.settings, readers, keys, event_id)
    if found is None:
        raise HTTPException(404, "no record of that event in the log")
    view = found.view
    body = {
        "entry": view.to_dict(),
        "reasons": [
            {
                "code": code,
                "clause": clause,
                "text": reason_words(code),
                "clause_text": clause_words(clause),
            }
            for code, clause in found.reasons
        ],
        "order_ref": view.order_ref,
        "trace_id": found.trace_id,
        "index": view.index,
        "shard": found.member.partition,
        "member": found.member.label,
        "origin": found.member.origin,
        "checkpoint_size": found.checkpoint_size,
        "provable": found.checkpoint_size is not None and view.index < found.checkpoint_size,
    }
    return JSONResponse(body)


# -- status ------------------------------------------------------------------------------------


class MemberBody(BaseModel):
    """One member log: its size and latest stored checkpoint."""

    member: str
    origin: str
    shard: int | None
    size: int
    checkpoint_size: int | None
    unsigned: int = Field(description="entries after its latest checkpoint")
    newest_entry_at: str | None


class LastVerificationBody(BaseModel):
    """The last ``/verify`` this server ran (in memory: none after a restart)."""

    at: str
    ok: bool
    size: int
    problem_count: int
    first_problem: ProblemBody | None


class StatusBody(BaseModel):
    """What the console's status panel shows."""

    origin: str
    sharded: bool
    size: int = Field(description="entries in every member log")
    members: list[MemberBody]
    latest_note: str | None = Field(
        description="the latest checkpoint (a sharded trail: heads note), checked with the "
        "pinned key; null when none, or when it does not verify (see latest_note_problem)"
    )
    latest_note_kind: Literal["checkpoint", "heads"]
    latest_note_problem: str | None
    newest_entry_at: str | None = Field(
        description="when the newest record among the last entries the latest checkpoints "
        "cover occurred"
    )
    last_verification: LastVerificationBody | None
    vkey: str = Field(description="the key this server pins (AUDIT_SINK_VKEY)")


def _iso(instant: datetime | None) -> str | None:
    if instant is None:
        return None
    return instant.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _latest_note(
    service: _Service, sharded: bool, single_note: str | None
) -> tuple[str | None, str | None]:
    """The latest note checked with the pinned key, or the problem with it."""
    if sharded:
        try:
            heads = latest_heads_note(service.settings, service.verifier)
        except HeadsError as exc:
            return None, f"the latest heads note does not verify: {exc}"
        return (None, None) if heads is None else (heads.note, None)
    if single_note is None:
        return None, None
    try:
        open_checkpoint(single_note, [service.verifier], origin=service.origin)
    except NoteError as exc:
        return None, f"the latest checkpoint does not verify: {exc}"
    return single_note, None


@router.get(
    "/status",
    summary="Sizes, latest checkpoints, the newest entry's time, the last verification",
    dependencies=[Depends(only())],
    response_model=StatusBody,
)
def status(service: Service) -> JSONResponse:
    """The trail at a glance, for the console's status panel."""
    with _trail_reading(service) as readers:
        sharded = is_sharded(service.settings, [one.member for one in readers])
        members = member_status(readers)
        single = None if sharded or not members else members[0].checkpoint_note
        with _unavailable_on_store_errors():
            note, problem = _latest_note(service, sharded, single)
    newest = [m.newest_at for m in members if m.newest_at is not None]
    body = {
        "origin": service.origin,
        "sharded": sharded,
        "size": sum(m.size for m in members),
        "members": [
            {
                "member": m.member.label,
                "origin": m.member.origin,
                "shard": m.member.partition,
                "size": m.size,
                "checkpoint_size": m.checkpoint_size,
                "unsigned": m.size - (m.checkpoint_size or 0),
                "newest_entry_at": _iso(m.newest_at),
            }
            for m in members
        ],
        "latest_note": note,
        "latest_note_kind": "heads" if sharded else "checkpoint",
        "latest_note_problem": problem,
        "newest_entry_at": _iso(max(newest)) if newest else None,
        "last_verification": service.verifications.last(),
        "vkey": service.verifier.vkey,
    }
    return JSONResponse(body)


# -- export ------------------------------------------------------------------------------------

_EXPORT_NAME: Final = "audit-export"


@router.get(
    "/export",
    summary="The whole trail as `audit-sink export` writes it, in one tar.gz",
    dependencies=[Depends(only())],
    response_class=FileResponse,
    responses={
        200: {
            "description": "A gzip-compressed tar of the `audit-export/` directory (each "
            "member's export with its verify_export.py; no ciphertexts).",
            "content": {"application/gzip": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
def export(service: Service) -> FileResponse:
    """Export every member into a temporary directory, pack it, and stream the archive
    (the directory is removed once sent)."""
    folder = Path(tempfile.mkdtemp(prefix="audit-sink-export-"))
    try:
        with _trail_reading(service) as readers:
            export_trail(service.settings, readers, service.verifier, folder / _EXPORT_NAME)
        archive = folder / f"{_EXPORT_NAME}.tar.gz"
        with tarfile.open(archive, "w:gz") as tar:
            tar.add(folder / _EXPORT_NAME, arcname=_EXPORT_NAME)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return FileResponse(
        archive,
        media_type="application/gzip",
        filename=f"{_EXPORT_NAME}-{stamp}.tar.gz",
        background=BackgroundTask(shutil.rmtree, folder, ignore_errors=True),
    )
