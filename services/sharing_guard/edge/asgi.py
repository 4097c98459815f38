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
   and time; never a query string, a header or a body;
6. hands the same facts to the service's ``observe`` hook, once per request (the request
   metrics): the method (one of the standard ones, else ``_OTHER``), the route template
   (:func:`metric_route`: never a path as sent), the status and the time in seconds.

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
from functools import lru_cache
from typing import Any, Final

import fastapi.routing
from starlette.datastructures import MutableHeaders
from starlette.responses import JSONResponse
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sharing_guard.edge.logsafe import loggable

__all__ = [
    "PAGE_CSP",
    "SECURITY_HEADERS",
    "UNMATCHED_ROUTE",
    "Edge",
    "EdgePolicy",
    "UnauthorizedError",
    "duplicate_key",
    "metric_method",
    "metric_route",
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

PAGE_CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'; "
    "require-trusted-types-for 'script'"
)
"""The policy of a console page (:attr:`EdgePolicy.pages`): its own scripts, styles, images
and API only; no inline script or style, nothing from another origin, never framed, and
no string ever assigned to an HTML sink (Trusted Types): the page builds its DOM with
``textContent`` and ``createElement``."""

_CONVERTER: Final = re.compile(r"\{(\w+):\w+\}")
_WITH_BODY: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED_ROUTE: Final = "<unmatched>"
"""The route of a request no route of the app takes, in metrics (never the path sent)."""


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

    ``pages`` are path prefixes of a browser console's static files (HTML, scripts, styles):
    they hold no data, so the edge asks no token for them (the page sends the token with
    each API call it makes), and their responses carry :data:`PAGE_CSP` instead of the
    JSON services' ``default-src 'none'``.

    ``observe``, when set, is called once per request, after the response, with the method
    (:func:`metric_method`), the route template (:func:`metric_route`), the status and the
    seconds taken: the hook that records request metrics. An error it raises is logged by
    type, never answered.
    """

    max_body_bytes: int
    authenticate: Callable[[str | None], object] | None
    public_paths: Collection[str]
    logger: logging.Logger
    observe: Callable[[str, str, int, float], None] | None = None
    pages: tuple[str, ...] = ()

    def is_page(self, path: str) -> bool:
        """Whether ``path`` is a console page's static file."""
        return any(path.startswith(prefix) for prefix in self.pages)


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


def metric_route(scope: Scope) -> str:
    """The route template for a metric label: the matched route's, else the template of the
    app's first route that would take the path (a request refused before routing, e.g. a
    401), else :data:`UNMATCHED_ROUTE`. Never the path as sent (personal data, unbounded)."""
    path = getattr(scope.get("route"), "path", None)
    if isinstance(path, str):
        return _CONVERTER.sub(r"{\1}", path)
    sent, root, partial = scope["path"], scope.get("root_path", ""), None
    if root and sent.startswith(root):
        sent = sent[len(root) :]
    for regex, template, methods in _route_table(scope.get("app")):
        if regex.match(sent):
            if methods is None or scope["method"] in methods:
                return template
            partial = partial or template  # the path, another method: a 405 when routed
    return partial or UNMATCHED_ROUTE


@lru_cache(maxsize=8)
def _route_table(app: object) -> list[tuple[re.Pattern[str], str, Collection[str] | None]]:
    """(path pattern, template, methods) of every route of ``app``, those of included
    routers too (FastAPI keeps them apart: :func:`fastapi.routing.iter_route_contexts`).
    Built once per app (its routes are fixed once it serves), not per refused request."""
    routes = getattr(app, "routes", None) or ()
    flatten = getattr(fastapi.routing, "iter_route_contexts", None)
    table = []
    for route in flatten(routes) if flatten is not None else routes:
        path = getattr(route, "path", None)
        if isinstance(path, str):
            regex, _, _ = compile_path(path)
            table.append((regex, _CONVERTER.sub(r"{\1}", path), getattr(route, "methods", None)))
    return table


def metric_method(scope: Scope) -> str:
    """The request method for a metric label: a standard one, else ``_OTHER``."""
    method = scope["method"]
    return method if method in _METHODS else "_OTHER"


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
                if self.policy.is_page(scope["path"]):
                    headers["Content-Security-Policy"] = PAGE_CSP
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
        elapsed = time.perf_counter() - started
        self.policy.logger.log(
            logging.DEBUG if scope["path"] in self.policy.public_paths else logging.INFO,
            "%s %s %d %.1fms",
            loggable(scope["method"], 16),
            route_template(scope),
            state["status"],
            elapsed * 1000,
        )
        if self.policy.observe is not None:
            self._observe(scope, state["status"], elapsed)

    def _observe(self, scope: Scope, status: int, elapsed: float) -> None:
        assert self.policy.observe is not None
        try:
            self.policy.observe(metric_method(scope), metric_route(scope), status, elapsed)
        except Exception as exc:  # metrics never fail a request (it is answered already)
            self.policy.logger.warning("request metrics failed: %s", type(exc).__name__)

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
        public = scope["path"] in self.policy.public_paths or self.policy.is_page(scope["path"])
        if self.policy.authenticate is not None and not public:
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
