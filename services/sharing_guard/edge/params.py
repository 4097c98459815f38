"""Strict query parameters: a route takes the names it declares, each at most once.

A typo (``stat=PENDING``) or an option a route does not have must not be silently
ignored, and ``?state=A&state=B`` must not quietly mean the last one: both are answered 400
naming the parameter (shown escaped: it came from the caller).
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import HTTPException, Request

from sharing_guard.edge.logsafe import loggable

__all__ = ["only"]


def only(*names: str) -> Callable[[Request], None]:
    """A FastAPI dependency refusing (400) query parameters other than ``names``, or any
    given more than once."""
    allowed = frozenset(names)
    shown = ", ".join(sorted(allowed)) if allowed else "none"

    def strict(request: Request) -> None:
        given = [name for name, _ in request.query_params.multi_items()]
        for name in given:
            if name not in allowed:
                raise HTTPException(
                    400,
                    f"unknown query parameter '{loggable(name, 64)}'; this route takes: {shown}",
                )
        for name in given:
            if given.count(name) > 1:
                raise HTTPException(
                    400, f"query parameter '{name}' is given more than once"
                )  # known

    return strict
