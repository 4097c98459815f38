"""The HTTP edge both services put in front of their FastAPI app (outermost middleware).

Before any route sees a request, :class:`Edge`:

1. refuses a request with more than one ``Authorization`` header (400, RFC 6750
   ``invalid_request``) and one whose ``Content-Length`` is malformed (400) or above the
   service's body limit (413, the limit named);
2. authenticates every path but the public ones, *before the body is read*: a caller
   without a valid token gets 401 and nothing of the body is read or parsed; the
   principal goes to ``request.state.principal``;
3. reads the body up to the limit (413 beyond it, whether or not a length was announced)
   and refuses JSON that repeats a key in any object (422), then hands the body on;
4. adds the security headers (:data:`SECURITY_HEADERS`) to every response, errors too;
5. turns an unexpected error into a 500 (logged by type and frames, never its message,
   which may quote data) and logs one line per request: method, route *template*, status
   and time; never a query string, a header or a body.

Everything it logs from the request goes through :func:`~sharing_guard.edge.logsafe.loggable`.
"""

from __future__ import annotations

import json
import logging
import re
import time
import traceback
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, Final

from starlette.datastructures import MutableHeaders
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sharing_guard.edge.logsafe import loggable

__all__ = [
    "SECURITY_HEADERS",
    "Edge",
    "EdgePolicy",
    "UnauthorizedError",
    "duplicate_key",
    "route_template",
]

SECURITY_HEADERS: Final = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Cross-Origin-Resource-Policy": "same-origin",
}
"""On every response: nothing cached, no type sniffing, never framed, no referrer, and no
script, style or image may load from anywhere (these services serve JSON and text)."""

_CONVERTER: Final = re.compile(r"\{(\w+):\w+\}")
_WITH_BODY: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class UnauthorizedError(Exception):
    """The caller is not authenticated: ``description`` is safe to show and log;
    ``challenge`` is the ``WWW-Authenticate`` value."""

    def __init__(self, description: str, challenge: str) -> None:
        super().__init__(description)
        self.description = description
        self.challenge = challenge


@dataclass(frozen=True)
class EdgePolicy:
    """What one service's edge enforces.

    ``authenticate`` maps the ``Authorization`` header (or ``None``) to a principal, or
    raises :class:`UnauthorizedError`; it is called for every path not in ``public_paths``.
    ``None``: the service has no protected path (health and metrics only).
    """

    max_body_bytes: int
    authenticate: Callable[[str | None], object] | None
    public_paths: Collection[str]
    logger: logging.Logger


class _TooLargeError(Exception):
    pass


class _DuplicateKeyError(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKeyError(key)
        seen[key] = value
    return seen


def duplicate_key(body: bytes) -> str | None:
    """The first key that an object of the JSON ``body`` repeats; ``None`` when none does
    or when the body is not JSON at all (the framework names that error)."""
    try:
        json.loads(body, object_pairs_hook=_refuse_duplicates)
    except _DuplicateKeyError as exc:
        return exc.key
    except ValueError:
        return None
    return None


def route_template(scope: Scope) -> str:
    """The matched route's template (``/orders/{order_ref}``); before routing, or for a path
    no route takes, the path itself made log-safe (:func:`loggable`)."""
    path = getattr(scope.get("route"), "path", None)
    if isinstance(path, str):
        return _CONVERTER.sub(r"{\1}", path)
    return loggable(scope["path"])


def _problem(status: int, detail: Any, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


class Edge:
    """The middleware (``app.add_middleware(Edge, policy=...)``); see the module."""

    def __init__(self, app: ASGIApp, policy: EdgePolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        state = {"status": 500, "answered": False}

        async def secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"], state["answered"] = message["status"], True
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
            await send(message)

        try:
            refusal, receive = await self._admit(scope, receive)
            if refusal is not None:
                await refusal(scope, receive, secured)
            else:
                await self.app(scope, receive, secured)
        except Exception as exc:  # logged without its message, then answered 500
            self.policy.logger.error(
                "%s %s failed: %s\n%s",
                loggable(scope["method"], 16),
                route_template(scope),
                type(exc).__name__,
                "".join(traceback.format_tb(exc.__traceback__)).rstrip(),
            )
            if not state["answered"]:
                await _problem(500, "internal error")(scope, receive, secured)
        self.policy.logger.log(
            logging.DEBUG if scope["path"] in self.policy.public_paths else logging.INFO,
            "%s %s %d %.1fms",
            loggable(scope["method"], 16),
            route_template(scope),
            state["status"],
            (time.perf_counter() - started) * 1000,
        )

    async def _admit(self, scope: Scope, receive: Receive) -> tuple[JSONResponse | None, Receive]:
        """A refusal to send instead of the app, or the ``receive`` the app reads from."""
        authorization = [v for k, v in scope["headers"] if k == b"authorization"]
        if len(authorization) > 1:
            return _problem(
                400,
                "send one Authorization header, not several",
                {"WWW-Authenticate": 'Bearer error="invalid_request"'},
            ), receive
        length = [v for k, v in scope["headers"] if k == b"content-length"]
        limit = self.policy.max_body_bytes
        if length:
            if len(length) > 1 or not length[0].isdigit():
                return _problem(400, "the Content-Length header is malformed"), receive
            if int(length[0]) > limit:
                return self._too_large(), receive
        if self.policy.authenticate is not None and scope["path"] not in self.policy.public_paths:
            header = authorization[0].decode("latin-1") if authorization else None
            try:
                principal = self.policy.authenticate(header)
            except UnauthorizedError as exc:
                self.policy.logger.warning(
                    "unauthenticated call refused: %s %s: %s",
                    loggable(scope["method"], 16),
                    route_template(scope),
                    exc.description,
                )
                headers = {"WWW-Authenticate": exc.challenge}
                return _problem(401, exc.description, headers), receive
            scope.setdefault("state", {})["principal"] = principal
        if not length and scope["method"] not in _WITH_BODY:
            return None, receive
        try:
            body = await _read(receive, limit)
        except _TooLargeError:
            return self._too_large(), receive
        key = duplicate_key(body) if body else None
        if key is not None:
            problem = {
                "loc": ["body", key],
                "msg": f"the key {key!r} appears more than once in one JSON object",
                "type": "duplicate_key",
            }
            return _problem(422, [problem]), receive
        return None, _replay(body, receive)

    def _too_large(self) -> JSONResponse:
        limit = self.policy.max_body_bytes
        return _problem(413, f"the request body is larger than this service takes ({limit} bytes)")


async def _read(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _TooLargeError
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
