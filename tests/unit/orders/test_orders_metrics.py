"""The order service's ``/metrics`` in process (the real app, store and auth; no broker):
requests by route template and status, changes and refusals by kind, four-eyes refusals,
and nothing personal in any label. The running process is read in
``tests/integration/test_service_metrics.py``."""

from __future__ import annotations

from fastapi.testclient import TestClient
from orders_support import bearer, local_service, order_body
from prometheus_client.parser import text_string_to_metric_families

REF = "ZH/2026/117"


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset((k, v) for k, v in s.labels.items() if not k.startswith("otel_"))): (
            s.value
        )
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_count_requests_changes_and_refusals_without_personal_data() -> None:
    local = local_service()
    client = TestClient(local.app)
    a, b = bearer(local.tokens.officer_a), bearer(local.tokens.officer_b)
    assert client.post("/orders", json=order_body(REF), headers=a).status_code == 201
    assert client.post("/orders", json=order_body(REF), headers=b).status_code == 409
    assert client.post(f"/orders/{REF}/approve", headers=a).status_code == 409  # four eyes
    assert client.post(f"/orders/{REF}/approve", headers=b).status_code == 200
    assert client.post(f"/orders/{REF}/approve", headers=b).status_code == 409
    revoke = {"reason": "lifted"}
    assert client.post(f"/orders/{REF}/revoke", json=revoke, headers=a).status_code == 200
    assert client.get(f"/orders/{REF}").status_code == 401

    response = client.get("/metrics")  # no token needed

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = _samples(response.text)

    def value(name: str, **labels: str) -> float:
        return samples[(name, frozenset(labels.items()))]

    requests = "sharing_guard_orders_http_requests_total"
    assert value(requests, method="POST", route="/orders", status="201") == 1
    assert value(requests, method="POST", route="/orders", status="409") == 1
    approve = "/orders/{order_ref}/approve"
    assert value(requests, method="POST", route=approve, status="409") == 2
    assert value(requests, method="POST", route=approve, status="200") == 1
    assert value(requests, method="GET", route="/orders/{order_ref}", status="401") == 1
    durations = "sharing_guard_orders_http_request_duration_seconds_count"
    assert value(durations, method="POST", route=approve) == 3
    changes = "sharing_guard_orders_changes_total"
    assert [value(changes, kind=k) for k in ("registered", "approved", "revoked")] == [1, 1, 1]
    refusals = "sharing_guard_orders_refusals_total"
    assert value(refusals, kind="registration", reason="reference_taken") == 1
    assert value(refusals, kind="approval", reason="four_eyes") == 1
    assert value(refusals, kind="approval", reason="already_approved") == 1
    assert value("sharing_guard_orders_four_eyes_refusals_total") == 1
    for secret in ("ZH/2026", "officer-a", "acct-1", "police-zh", local.tokens.officer_a):
        assert secret not in response.text
