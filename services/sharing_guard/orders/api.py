"""The HTTP API of the order workflow (FastAPI; OpenAPI at ``/openapi.json``).

``/livez``, ``/readyz``, ``/metrics``, ``/openapi.json`` and the console's static files
(``/console``, ``/console/...``) need no token; every other path needs a bearer token,
checked by the shared HTTP edge (:mod:`sharing_guard.edge.asgi`) before the body is read:
401 with ``WWW-Authenticate`` when the token is missing, malformed, unknown or expired; then
403 when the role does not allow the call (see :mod:`sharing_guard.orders.auth`). The edge
also refuses two ``Authorization`` headers (400), a body over ``max_body_bytes`` (413) and
JSON repeating a key (422), and puts the security headers on every response. Unknown or
repeated query parameters get 400; invalid requests 422 naming every bad field (without
echoing values); a refused change (four eyes, revoked...) 409; an order too large for a
broker record 413.

Order references may hold ``/`` (``ZH/2026/117``): the routes take the rest of the path as
the reference, sent plain or as ``%2F``. The interactive ``/docs`` and ``/redoc`` pages are
off: they load scripts from a public CDN into the page where a token would be pasted.

``/console/`` is the legal officers' console (:mod:`sharing_guard.orders.console`): static
files served without a token under the page policy of the edge; the page signs in with
``GET /me`` (the token's officer, role and allowed actions) and calls this API with the
officer's token.

``/metrics`` is the Prometheus text of the service's metrics
(:mod:`sharing_guard.orders.telemetry`): requests counted and timed through the edge's
``observe`` hook, changes and refusals by kind; it is left out of the OpenAPI description.
"""

import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Path, Query, Request, Security
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AfterValidator
from starlette.exceptions import HTTPException as StarletteHTTPException

from sharing_guard.edge.asgi import Edge, EdgePolicy, UnauthorizedError
from sharing_guard.edge.identifiers import ORDER_REF_MAX, normalise
from sharing_guard.edge.params import only
from sharing_guard.orders.auth import (
    MISSING_TOKEN,
    Action,
    Authenticator,
    AuthError,
    Principal,
)
from sharing_guard.orders.console import ENTRY, PREFIX, add_console
from sharing_guard.orders.model import RefusedError
from sharing_guard.orders.schemas import (
    ListQuery,
    OfficerOut,
    OrderOut,
    Problem,
    RegisterOrder,
    RevokeOrder,
    ValidationProblem,
)
from sharing_guard.orders.service import (
    InvalidRequestError,
    OrderNotFoundError,
    OrderService,
    TooLargeError,
    UnavailableError,
)
from sharing_guard.orders.telemetry import OrdersTelemetry

log = logging.getLogger(__name__)
_bearer = HTTPBearer(auto_error=False, description="A token issued by the administrator.")

OrderRef = Annotated[
    str,
    Path(min_length=1, max_length=4 * ORDER_REF_MAX, description="The order reference."),
    AfterValidator(normalise),  # as registered: the full-width form names the same order
]
PUBLIC_PATHS = frozenset(("/livez", "/readyz", "/metrics", "/openapi.json"))
_CHALLENGE = 'Bearer realm="sharing-guard-orders"'


_AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "Missing, malformed, unknown or expired token."},
    403: {"model": Problem, "description": "The token's role does not allow this call."},
    422: {"model": ValidationProblem, "description": "Invalid request; every bad field named."},
}
_CHANGE_RESPONSES: dict[int | str, dict[str, Any]] = {
    **_AUTH_RESPONSES,
    400: {"model": Problem, "description": "Unknown or repeated query parameter."},
    404: {"model": Problem, "description": "No such order."},
    409: {"model": Problem, "description": "Refused: four eyes, already approved, revoked..."},
    413: {"model": Problem, "description": "Too large for the service or a broker record."},
    503: {"model": Problem, "description": "Kafka unreachable; nothing was changed."},
}


class _ForbiddenError(Exception):
    def __init__(self, description: str) -> None:
        self.description = description


def create_app(
    service: OrderService,
    authenticator: Authenticator,
    readiness: Callable[[], dict[str, bool]],
    clock: Callable[[], datetime],
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]] | None = None,
    *,
    max_body_bytes: int = 524_288,
) -> FastAPI:
    """The FastAPI application over a service; the composition root supplies the parts.

    Metrics go to the service's telemetry; a service without one is given a new one.
    """
    if service.telemetry is None:
        service.telemetry = OrdersTelemetry()
    telemetry = service.telemetry
    app = FastAPI(
        title="sharing-guard orders",
        version="1",
        description="Law-enforcement orders: register, approve (four eyes), revoke, "
        "and the disclosures made under each.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.router.redirect_slashes = False  # a redirect would echo the Host header

    def authenticate(header: str | None) -> Principal:
        try:
            return authenticator.authenticate(header, clock())
        except AuthError as exc:
            challenge = _CHALLENGE
            if exc.description != MISSING_TOKEN:  # RFC 6750: no error code without a token
                challenge += f', error="invalid_token", error_description="{exc.description}"'
            raise UnauthorizedError(exc.description, challenge) from None

    app.add_middleware(
        Edge,
        policy=EdgePolicy(
            max_body_bytes=max_body_bytes,
            authenticate=authenticate,
            public_paths=PUBLIC_PATHS | {ENTRY},
            logger=log,
            observe=telemetry.http.observe,
            pages=(PREFIX,),
        ),
    )

    def principal(
        request: Request,
        _: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    ) -> Principal:
        """The caller the edge authenticated (``Security`` declares the scheme in OpenAPI)."""
        who = request.scope.get("state", {}).get("principal")
        if not isinstance(who, Principal):  # never: the edge guards every /orders path
            raise RuntimeError("a protected route was reached without authentication")
        return who

    def allowed(action: Action) -> Callable[[Principal], Principal]:
        def check(who: Annotated[Principal, Depends(principal)]) -> Principal:
            if not who.may(action):
                log.warning(
                    "forbidden: officer=%s role=%s action=%s", who.officer_id, who.role, action
                )
                raise _ForbiddenError(f"role {who.role.value} may not {action.value} orders")
            return who

        return check

    _add_error_handlers(app)

    @app.get("/livez", tags=["health"], dependencies=[Depends(only())])
    def livez() -> dict[str, bool]:
        """The process answers."""
        return {"live": True}

    @app.get(
        "/readyz",
        tags=["health"],
        responses={503: {"description": "Not ready."}},
        dependencies=[Depends(only())],
    )
    def readyz() -> JSONResponse:
        """Ready when the Kafka producer is connected and the state is loaded."""
        parts = readiness()
        ready = all(parts.values())
        return JSONResponse({"ready": ready, **parts}, status_code=200 if ready else 503)

    @app.get("/metrics", include_in_schema=False, dependencies=[Depends(only())])
    def metrics() -> Response:
        """The Prometheus text of the service's metrics."""
        return telemetry.render()

    @app.get(
        "/me",
        responses={
            401: _AUTH_RESPONSES[401],
            400: {"model": Problem, "description": "A query parameter (this call takes none)."},
        },
        tags=["officers"],
        dependencies=[Depends(only())],
    )
    def me(who: Annotated[Principal, Depends(principal)]) -> OfficerOut:
        """The officer the token names, their role and what it allows (any valid token)."""
        return OfficerOut(
            officer_id=who.officer_id,
            role=who.role,
            actions=[action for action in Action if who.may(action)],
        )

    add_console(app)

    @app.post(
        "/orders",
        status_code=201,
        responses=_CHANGE_RESPONSES,
        tags=["orders"],
        dependencies=[Depends(only())],
    )
    def register_order(
        body: RegisterOrder,
        who: Annotated[Principal, Depends(allowed(Action.REGISTER))],
    ) -> OrderOut:
        """Register an order in the caller's name; it is pending until a second officer
        approves it."""
        return service.register(who, body)

    @app.post(
        "/orders/{order_ref:path}/approve",
        responses=_CHANGE_RESPONSES,
        tags=["orders"],
        dependencies=[Depends(only())],
    )
    def approve_order(
        order_ref: OrderRef,
        who: Annotated[Principal, Depends(allowed(Action.APPROVE))],
    ) -> OrderOut:
        """Approve an order; refused (409) for the officer who registered it."""
        return service.approve(who, order_ref)

    @app.post(
        "/orders/{order_ref:path}/revoke",
        responses=_CHANGE_RESPONSES,
        tags=["orders"],
        dependencies=[Depends(only())],
    )
    def revoke_order(
        order_ref: OrderRef,
        body: RevokeOrder,
        who: Annotated[Principal, Depends(allowed(Action.REVOKE))],
    ) -> OrderOut:
        """Revoke an order, with the reason; final."""
        return service.revoke(who, order_ref, body.reason)

    @app.get(
        "/orders",
        responses={**_AUTH_RESPONSES, 400: _CHANGE_RESPONSES[400]},
        tags=["orders"],
        dependencies=[Depends(only("state"))],
    )
    def list_orders(
        who: Annotated[Principal, Depends(allowed(Action.READ))],
        query: Annotated[ListQuery, Query()],
    ) -> list[OrderOut]:
        """Every order with its state and disclosure count (unknown parameters refused)."""
        return service.list(query.state)

    @app.get(
        "/orders/{order_ref:path}",
        responses={
            **_AUTH_RESPONSES,
            400: _CHANGE_RESPONSES[400],
            404: {"model": Problem, "description": "No such order."},
        },
        tags=["orders"],
        dependencies=[Depends(only())],
    )
    def show_order(
        order_ref: OrderRef,
        who: Annotated[Principal, Depends(allowed(Action.READ))],
    ) -> OrderOut:
        """One order with its state and each disclosure made under it."""
        return service.show(order_ref)

    return app


def _add_error_handlers(app: FastAPI) -> None:
    """Each refusal of the service as its status code, ``{"detail": ...}``."""

    @app.exception_handler(_ForbiddenError)
    async def forbidden(request: Request, exc: _ForbiddenError) -> JSONResponse:
        return JSONResponse({"detail": exc.description}, status_code=403)

    @app.exception_handler(RefusedError)
    async def refused(request: Request, exc: RefusedError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    @app.exception_handler(OrderNotFoundError)
    async def not_found(request: Request, exc: OrderNotFoundError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(TooLargeError)
    async def too_large(request: Request, exc: TooLargeError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=413)

    @app.exception_handler(InvalidRequestError)
    async def invalid_request(request: Request, exc: InvalidRequestError) -> JSONResponse:
        problem = {"loc": ["body", exc.field], "msg": str(exc), "type": "value_error"}
        return JSONResponse({"detail": [problem]}, status_code=422)

    @app.exception_handler(UnavailableError)
    async def unavailable(request: Request, exc: UnavailableError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code != 405:
            return await http_exception_handler(request, exc)
        # Starlette names only the first route's methods; list every route's of the same
        # template (an order reference may hold "/": "/orders/a/revoke" could also name the
        # order "a/revoke", but the call was routed as a revocation).
        template = getattr(request.scope.get("route"), "path", None)
        path = request.url.path
        methods = sorted(
            {
                method
                for route in app.routes
                if isinstance(route, APIRoute)
                and route.path_regex.match(path)
                and template in (None, route.path)
                for method in route.methods or ()
            }
        )
        return JSONResponse(
            {"detail": exc.detail}, status_code=405, headers={"Allow": ", ".join(methods)}
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {"loc": list(err.get("loc", ())), "msg": err.get("msg", ""), "type": err.get("type")}
            for err in exc.errors()
        ]
        return JSONResponse({"detail": problems}, status_code=422)
