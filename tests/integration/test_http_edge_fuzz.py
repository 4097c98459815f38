"""Both HTTP services under a hostile caller, fuzzed by hypothesis: paths, query strings,
headers and bodies of any characters, to every route, with and without a token.

Whatever is sent: no 5xx, the security headers on every response, and the log (the
services' own format, written to a file as in production) splits into exactly the
records the services wrote: no control or line-separator character gets into a line,
and nothing a caller sends can start a line of its own.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from audit_sink.http_api import create_app
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from orders_support import bearer, local_service, order_body
from sharing_guard.edge.asgi import SECURITY_HEADERS
from sharing_guard.edge.logsafe import CONTINUATION, LOG_FORMAT, SafeFormatter
from test_audit_http import TOKEN, populate, settings_for
from test_audit_support import sqlite_backend

ORDER_PATHS = ("/orders", "/orders/{}", "/orders/{}/approve", "/orders/{}/revoke", "/livez")
AUDIT_PATHS = ("/entries", "/verify", "/proof/{}", "/checkpoint", "/transparency-report")
METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")
# Every kind of character that has broken logs: C0 and C1 controls, line and paragraph
# separators, bidirectional and zero-width format characters, escapes, plus ordinary text.
HOSTILE = st.text(
    alphabet=st.one_of(
        st.sampled_from(
            "\x00\x07\x08\t\n\x0b\x0c\r\x1b\x1c\x1d\x1e\x7f\x85\xa0"
            "\u2028\u2029\u200b\u200e\u202e\u2066\ufeff\\%/ "
        ),
        st.characters(codec="utf-8"),
        st.sampled_from("abc-XYZ_019"),
    ),
    max_size=40,
)
FORGED = "\n2026-12-07 10:00:00,000 INFO sharing_guard.orders.service: order approved: x"


class _Count(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


@dataclass
class Logs:
    """The services' log as a file in their format, and how many records reached it."""

    path: Path
    counter: _Count
    read: int = 0

    def new_lines(self) -> tuple[list[str], int]:
        """The lines written since the last call, and the records they came from."""
        text = self.path.read_text(encoding="utf-8")
        fresh, self.read = text[self.read :], len(text)
        records, self.counter.count = self.counter.count, 0
        return fresh.splitlines(), records


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Logs]:
    path = tmp_path_factory.mktemp("edge-logs") / "services.log"
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(SafeFormatter(LOG_FORMAT))
    handler.setLevel(logging.INFO)
    counter = _Count()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.addHandler(counter)
    root.setLevel(logging.INFO)
    try:
        yield Logs(path, counter)
    finally:
        root.removeHandler(handler)
        root.removeHandler(counter)
        root.setLevel(level)
        handler.close()


@pytest.fixture(scope="module")
def clients(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    orders = local_service()
    officer = bearer(orders.tokens.officer_b)["Authorization"]
    seeded = TestClient(orders.app).post(
        "/orders", json=order_body("ZH/2026/1"), headers={"Authorization": officer}
    )
    assert seeded.status_code == 201
    tmp = tmp_path_factory.mktemp("edge-audit")
    backend = sqlite_backend(tmp)
    try:
        audit_settings = settings_for(backend, tmp, None)  # type: ignore[arg-type]
        populate(backend)
        audit = create_app(audit_settings, token=TOKEN)
        with (
            TestClient(orders.app, raise_server_exceptions=False) as order_client,
            TestClient(audit, raise_server_exceptions=False) as audit_client,
        ):
            yield {
                "orders": (order_client, ORDER_PATHS, bearer(orders.tokens.officer_a)),
                "audit": (audit_client, AUDIT_PATHS, {"Authorization": f"Bearer {TOKEN}"}),
            }
    finally:
        backend.close()


def _header_value(text: str) -> bytes:
    """A header value as bytes (HTTP carries octets): UTF-8, line breaks kept out as the
    transport itself would refuse them."""
    return text.replace("\r", "").replace("\n", "").encode("utf-8")


@st.composite
def hostile_requests(draw: st.DrawFn) -> dict[str, Any]:
    template = draw(st.sampled_from(ORDER_PATHS + AUDIT_PATHS))
    segment = draw(st.one_of(HOSTILE, st.just(FORGED), st.just("ZH/2026/1")))
    path = template.format(quote(segment, safe="/"))
    query = draw(st.lists(st.tuples(HOSTILE, HOSTILE), max_size=3))
    auth = draw(st.sampled_from(["none", "valid", "garbage", "twice"]))
    body_kind = draw(st.sampled_from(["none", "json", "bytes", "duplicate"]))
    body: bytes | None = None
    if body_kind == "json":
        fields = order_body(draw(HOSTILE), authority=draw(HOSTILE), reason=draw(HOSTILE))
        body = json.dumps(fields).encode()
    elif body_kind == "bytes":
        body = draw(st.binary(max_size=200))
    elif body_kind == "duplicate":
        body = b'{"reason": "a", "reason": "b"}'
    return {
        "method": draw(st.sampled_from(METHODS)),
        "path": path,
        "query": query,
        "auth": auth,
        "garbage": draw(HOSTILE),
        "header": draw(HOSTILE),
        "body": body,
    }


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(request=hostile_requests())
def test_no_5xx_headers_always_and_the_log_splits_into_its_records(
    clients: dict[str, Any], logs: Logs, request: dict[str, Any]
) -> None:
    service = "orders" if request["path"].startswith(("/orders", "/livez")) else "audit"
    client, _, valid = clients[service]
    headers: list[tuple[bytes, bytes]] = [(b"x-client-note", _header_value(request["header"]))]
    if request["auth"] == "valid":
        headers.append((b"authorization", valid["Authorization"].encode()))
    elif request["auth"] == "garbage":
        headers.append((b"authorization", _header_value(request["garbage"])))
    elif request["auth"] == "twice":
        headers += [(b"authorization", valid["Authorization"].encode())] * 2
    if request["body"] is not None:
        headers.append((b"content-type", b"application/json"))
    response = client.request(
        request["method"],
        request["path"],
        params=[(k.encode("utf-8", "surrogatepass"), v.encode("utf-8", "surrogatepass"))
                for k, v in request["query"]],
        headers=headers,
        content=request["body"],
    )  # fmt: skip
    assert response.status_code < 500, response.text
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, (name, response.status_code)

    lines, records = logs.new_lines()
    starts = [line for line in lines if not line.startswith(CONTINUATION)]
    assert len(starts) == records, lines
    for line in lines:
        assert line.isprintable(), ascii(line)
    assert not any(line.startswith(FORGED.strip()[:23]) for line in lines)  # never a forged start
