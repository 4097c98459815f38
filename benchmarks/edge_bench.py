"""What the shared HTTP edge (``sharing_guard.edge.asgi.Edge``) costs per request.

Requests are driven straight through ASGI in one process (no socket, no HTTP client), so
that the figures are the services' own work. In one run, on the same requests:

* ``bare``: a minimal ASGI app answering a small JSON body (the floor);
* ``edge``: the same app behind ``Edge`` (token check, security headers, one log line,
  the request-metrics hook), and ``edge POST`` with a small JSON body (read, size-checked
  and scanned for duplicate keys too);
* ``orders GET``: the order service's real app, ``GET /orders/{order_ref}`` of a stored order;
* ``orders POST``: its ``POST /orders/{order_ref}/revoke`` refused (409, revoked already), a
  request with a JSON body that goes through every check and the service's lock.

It reports requests/s for each and the edge's cost per request in microseconds, and as a
share of the real service's request time. Run with ``make bench-edge``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "unit" / "orders")]

from orders_support import bearer, local_service, order_body  # noqa: E402
from sharing_guard.edge.asgi import Edge, EdgePolicy  # noqa: E402

App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


async def bare(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": b'{"ok":true}'})


def _scope(method: str, path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8090),
    }


Case = tuple[App, str, str, list[tuple[bytes, bytes]], bytes]
"""An app and one request to it: method, path, headers, body."""


async def _drive(case: Case, count: int) -> float:
    """Seconds for ``count`` requests, one after the other."""
    app, method, path, headers, body = case
    statuses: set[int] = set()

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.add(message["status"])

    started = time.perf_counter()
    for _ in range(count):
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return {"type": "http.disconnect"}

        await app(_scope(method, path, headers), receive, send)
    elapsed = time.perf_counter() - started
    assert len(statuses) == 1, statuses  # every request answered alike
    return elapsed


def _best(runs: list[float], count: int) -> float:
    return count / min(runs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "edge.json")
    args = parser.parse_args()
    logging.disable(logging.CRITICAL)  # the log line is formatted, not written to a terminal

    local = local_service()
    token = bearer(local.tokens.officer_a)["Authorization"]
    auth = [(b"authorization", token.encode())]
    edge = Edge(
        bare,
        EdgePolicy(
            max_body_bytes=524_288,
            authenticate=lambda header: header,
            public_paths=(),
            logger=logging.getLogger("bench"),
            observe=lambda *_: None,
        ),
    )
    with warnings.catch_warnings():  # Starlette asks for httpx2; httpx is what is installed
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    with TestClient(local.app) as client:  # store one order, revoked, to read and refuse
        headers = {"Authorization": token}
        registered = client.post("/orders", json=order_body("ZH/2026/1"), headers=headers)
        revoked = client.post("/orders/ZH/2026/1/revoke", json={"reason": "x"}, headers=headers)
        assert (registered.status_code, revoked.status_code) == (201, 200)
    revoke = json.dumps({"reason": "again"}).encode()
    json_headers = [
        *auth,
        (b"content-type", b"application/json"),
        (b"content-length", str(len(revoke)).encode()),
    ]
    cases: dict[str, Case] = {
        "bare": (bare, "GET", "/x", auth, b""),
        "edge": (edge, "GET", "/x", auth, b""),
        "edge POST": (edge, "POST", "/x", json_headers, revoke),
        "orders GET": (local.app, "GET", "/orders/ZH/2026/1", auth, b""),
        "orders POST": (local.app, "POST", "/orders/ZH/2026/1/revoke", json_headers, revoke),
    }

    async def run_all() -> dict[str, list[float]]:
        timings: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.repeat):  # interleaved, so drift hits every case alike
            for name, case in cases.items():
                timings[name].append(await _drive(case, args.requests))
        return timings

    timings = asyncio.run(run_all())
    rates = {name: _best(runs, args.requests) for name, runs in timings.items()}
    edge_us = (1 / rates["edge"] - 1 / rates["bare"]) * 1e6
    edge_post_us = (1 / rates["edge POST"] - 1 / rates["bare"]) * 1e6
    print(f"{'case':<12} {'requests/s':>11} {'us/request':>11}  (best of {args.repeat})")
    for name, rate in rates.items():
        print(f"{name:<12} {rate:>11,.0f} {1e6 / rate:>11.1f}")
    shares = {
        "orders GET": edge_us / (1e6 / rates["orders GET"]),
        "orders POST": edge_post_us / (1e6 / rates["orders POST"]),
    }
    parts = "; ".join(f"{share:.1%} of an {name} request" for name, share in shares.items())
    print(f"edge cost: {edge_us:.1f} us (GET), {edge_post_us:.1f} us (POST, JSON body); {parts}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "machine": {"python": platform.python_version(), "platform": platform.platform()},
                "requests": args.requests,
                "repeat": args.repeat,
                "seconds": timings,
                "median_seconds": {k: statistics.median(v) for k, v in timings.items()},
                "requests_per_s": rates,
                "edge_us_per_request": {"GET": edge_us, "POST": edge_post_us},
                "edge_share": shares,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
