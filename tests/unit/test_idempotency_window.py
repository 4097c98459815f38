"""The idempotency window: long enough for every redelivery the inputs' retention allows,
refused when it is not, and governance ids kept for good when their topic keeps records
forever."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sharing_guard.stream.window import Retention, WindowError, idempotency_window

DAY = 86_400_000
TRANSFERS = "sharing.transfers.requested"
REQUESTS = "sharing.order-requests"
CONSENTS = "governance.consents"


def topics(transfers: Retention, consents: Retention | None = None) -> dict[str, Retention]:
    return {
        TRANSFERS: transfers,
        REQUESTS: Retention(DAY, DAY),
        CONSENTS: consents or Retention(-1, 7 * DAY),
    }


def test_the_default_window_is_the_longest_a_transfer_can_stay_in_its_topic() -> None:
    window = idempotency_window(topics(Retention(7 * DAY, 7 * DAY)), [TRANSFERS, REQUESTS], None)
    assert window.window_ms == 14 * DAY
    assert window.expires_at(TRANSFERS, 1_000) == 1_000 + 14 * DAY


def test_a_window_shorter_than_the_transfers_retention_is_refused() -> None:
    with pytest.raises(WindowError, match="shorter than the retention"):
        idempotency_window(topics(Retention(60_000, DAY)), [TRANSFERS, REQUESTS], 59.9 + 0)


def test_a_window_as_long_as_the_retention_is_accepted() -> None:
    retained = {TRANSFERS: Retention(60_000, 60_000), REQUESTS: Retention(60_000, 60_000)}
    window = idempotency_window(retained, [TRANSFERS, REQUESTS], 60)
    assert window.window_ms == 60_000


def test_transfers_kept_forever_cannot_have_a_window() -> None:
    with pytest.raises(WindowError, match="forever"):
        idempotency_window(topics(Retention(-1, DAY)), [TRANSFERS, REQUESTS], None)


def test_governance_ids_of_a_topic_kept_forever_never_expire() -> None:
    window = idempotency_window(topics(Retention(DAY, DAY)), [TRANSFERS, REQUESTS], None)
    assert window.expires_at(CONSENTS, 5) is None


def test_governance_ids_expire_with_the_window_when_their_topic_fits_in_it() -> None:
    retained = topics(Retention(DAY, DAY), consents=Retention(DAY // 2, DAY // 2))
    window = idempotency_window(retained, [TRANSFERS, REQUESTS], None)
    assert window.expires_at(CONSENTS, 0) == 2 * DAY


@given(
    retention=st.integers(1, 30 * DAY),
    segment=st.integers(1, 30 * DAY),
    configured=st.none() | st.integers(1, 90 * DAY),
)
def test_no_accepted_window_is_shorter_than_the_retention(
    retention: int, segment: int, configured: int | None
) -> None:
    retained = {TRANSFERS: Retention(retention, segment), REQUESTS: Retention(retention, segment)}
    try:
        window = idempotency_window(
            retained, [TRANSFERS, REQUESTS], None if configured is None else configured / 1000
        )
    except WindowError:
        assert configured is not None
        assert configured < retention
        return
    assert window.window_ms >= retention
    assert window.expires_at(TRANSFERS, 0) == window.window_ms


def test_an_unchecked_window_must_be_given_and_keeps_governance_ids() -> None:
    from sharing_guard.settings import GuardSettings
    from sharing_guard.stream.preflight import PreflightError, unchecked_window

    with pytest.raises(PreflightError, match="SHARING_GUARD_IDEMPOTENCY_WINDOW_S"):
        unchecked_window(GuardSettings(check_retention=False), [TRANSFERS, REQUESTS])
    window = unchecked_window(
        GuardSettings(check_retention=False, idempotency_window_s=60), [TRANSFERS, REQUESTS]
    )
    assert window.expires_at(TRANSFERS, 0) == 60_000
    assert window.expires_at(CONSENTS, 0) is None
