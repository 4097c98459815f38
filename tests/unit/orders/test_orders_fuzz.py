"""Property-based fuzzing of the order API from its own OpenAPI description (schemathesis).

Valid and invalid requests generated for every operation, sent with a legal officer's
token: never a 5xx; every 4xx carries a ``detail`` that names the problem (a message, or
for 422 each invalid field with its location); responses match the description. A
schema-valid body may be refused only for the rules JSON Schema cannot express (an
unordered validity window, a date-time before the first UTC instant), which schemathesis'
own positive-acceptance check cannot know.
"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, settings
from orders_support import bearer, local_service, order_body
from schemathesis import GenerationMode
from schemathesis.checks import positive_data_acceptance
from schemathesis.core.parameters import ParameterLocation
from sharing_guard.orders.schemas import ENDED, NO_LENGTH

LOCAL = local_service()
schema = schemathesis.openapi.from_asgi("/openapi.json", LOCAL.app)
schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
# A body over the service's limit is refused unread: 413 is a rejection too.
_rejection = schema.config.checks.negative_data_rejection
_rejection.expected_statuses = [*_rejection.expected_statuses, "413"]
HEADERS = bearer(LOCAL.tokens.officer_a)
BEYOND_THE_SCHEMA = {
    "Value error, " + NO_LENGTH,
    ENDED,  # the window must not have ended: the service's clock, not the schema, knows
    # RFC 3339 allows 0001-01-01T00:00:00+00:01, which is before the first UTC instant.
    "Value error, timestamp is outside the representable UTC range",
}
# Authorities may be written in any script, and account and recipient ids are kept exactly
# as typed: the policy's refusal of hidden characters in them is beyond a JSON Schema pattern.
BEYOND_THE_SCHEMA_PREFIXES = (
    "Value error, the authority ",
    "Value error, the id ",
    "Value error, account id ",
    "Value error, the reason ",
)


def _seed_orders() -> None:
    """Orders for path parameters to find: one pending, registered by another officer."""
    from fastapi.testclient import TestClient

    client = TestClient(LOCAL.app)
    other = bearer(LOCAL.tokens.officer_b)
    for ref in ("seed-1", "seed-2"):
        assert client.post("/orders", json=order_body(ref), headers=other).status_code == 201


_seed_orders()


@schema.parametrize()
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_server_errors_and_every_refusal_names_its_problem(case: schemathesis.Case) -> None:
    # A case whose headers are the negative part (the token left out or mangled) is sent as
    # generated: adding the officer's token would make it valid, and then accepted.
    headers_mutated = case.meta is not None and case.meta.is_negative_at(ParameterLocation.HEADER)
    response = case.call() if headers_mutated else case.call(headers=HEADERS)
    assert response.status_code < 500, response.text
    if 400 <= response.status_code < 500:
        detail = response.json()["detail"]
        assert detail, response.text
        if response.status_code == 422:
            assert isinstance(detail, list)
            for problem in detail:
                assert problem["loc"], problem
                assert problem["msg"], problem
        else:
            assert isinstance(detail, str)
        positive = case.meta is not None and not case.meta.generation.mode.is_negative
        if response.status_code == 422 and positive:
            # Only the rules JSON Schema cannot state may refuse a schema-valid body.
            beyond = {
                p["msg"]
                for p in detail
                if p["msg"] in BEYOND_THE_SCHEMA or p["msg"].startswith(BEYOND_THE_SCHEMA_PREFIXES)
            }
            assert beyond == {p["msg"] for p in detail}, detail
    case.validate_response(response, excluded_checks=[positive_data_acceptance])
