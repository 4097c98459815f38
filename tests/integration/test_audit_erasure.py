"""Erasure on both stores: keys destroyed, ciphertexts deleted, the log still verifies.

The verifier reports erased entries as erased (listed by an erasure entry) and tells them
apart from payloads that are simply missing.
"""

# The fixtures come from test_audit_support; pytest resolves parameters named after them.
# ruff: noqa: F811

from __future__ import annotations

from typing import Any

import pytest
from audit_sink.leaf import EntryType, decode_leaf
from audit_sink.query import PersonalStatus, QueryCriteria, query_entries
from audit_sink.verify import ProblemCode
from audit_sink.writer import AuditLog
from sharing_guard.contract.enums import Outcome
from test_audit_support import (
    Backend,
    backend,  # noqa: F401
    consumed,
    next_positions,
    pg_names,  # noqa: F401
    record,
)

ERASED = "acct-erased"
KEPT = "acct-kept"


def populate(log: AuditLog) -> list[int]:
    """Six records, alternating the two accounts, plus one conflicting duplicate of the
    first erased one (an anomaly sealed under its key); return the erased account's entries."""
    records = [record(n, account=ERASED if n % 2 == 0 else KEPT) for n in range(6)]
    records.append(record(0, account=ERASED, outcome=Outcome.ALLOW))  # duplicate-conflict
    batch = consumed(records)
    log.append_batch(batch, next_positions(batch))
    return [0, 2, 4, 6]


def views(backend: Backend, log: AuditLog, **criteria: Any) -> list[Any]:
    with log.store.reader() as reader:
        return query_entries(reader, backend.keys(), QueryCriteria(**criteria), backend.index_key)


def test_erasure_destroys_the_key_and_ciphertexts_and_the_log_still_verifies(
    backend: Backend,
) -> None:
    log = backend.log()
    erased = populate(log)

    result = log.erase(ERASED)

    assert (result.erasure_index, result.erased_entries) == (7, len(erased))
    assert (result.keys_destroyed, result.payloads_deleted) == (1, len(erased))
    with log.store.reader() as reader:
        erasure = decode_leaf(reader.leaves([7])[7])
        assert erasure.type == EntryType.ERASURE
        assert erasure.body["erased"] == erased
        assert reader.payloads(erased) == {}
        assert reader.erased() == set(erased)
    tag = backend.index_key.account_tag(ERASED)
    assert backend.keys().keys_for_tags([tag], create=False) == {}
    report = backend.verify()
    assert report.ok, report.problems
    assert report.erased == len(erased)
    assert report.size == 8


def test_queries_show_erased_entries_as_erased_and_others_in_clear(backend: Backend) -> None:
    log = backend.log()
    populate(log)
    log.erase(ERASED)

    shown = views(backend, log)

    assert [(v.index, v.personal) for v in shown] == [
        (0, PersonalStatus.ERASED),
        (1, PersonalStatus.OPENED),
        (2, PersonalStatus.ERASED),
        (3, PersonalStatus.OPENED),
        (4, PersonalStatus.ERASED),
        (5, PersonalStatus.OPENED),
    ]
    assert {v.to_dict()["account_id"] for v in shown if v.index % 2 == 0} == {"<erased>"}
    assert {v.to_dict()["event_json"] for v in shown if v.index % 2 == 0} == {"<erased>"}
    assert {v.account_id for v in shown if v.index % 2 == 1} == {KEPT}
    assert [v.outcome for v in shown] == ["BLOCK"] * 6  # non-personal fields stay
    assert views(backend, log, account_id=ERASED) == []
    assert [v.index for v in views(backend, log, account_id=KEPT)] == [1, 3, 5]


def test_erasing_again_appends_nothing(backend: Backend) -> None:
    log = backend.log()
    populate(log)
    log.erase(ERASED)

    again = log.erase(ERASED)

    assert (again.erasure_index, again.erased_entries, again.keys_destroyed) == (None, 0, 0)
    with log.store.reader() as reader:
        assert reader.size() == 8


class _CrashingKeys:
    """A key store that fails when asked to destroy a key."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def destroy(self, tag: bytes) -> int:
        raise OSError("key store unreachable")


def test_an_interrupted_erasure_is_completed_by_running_it_again(backend: Backend) -> None:
    log = backend.log()
    populate(log)
    crashing = backend.log(keys=_CrashingKeys(backend.keys()))
    with pytest.raises(OSError, match="unreachable"):
        crashing.erase(ERASED)
    assert backend.verify().erased == 4  # the erasure entry came first

    result = backend.log().erase(ERASED)

    assert (result.erasure_index, result.erased_entries) == (None, 0)
    assert (result.keys_destroyed, result.payloads_deleted) == (1, 4)
    report = backend.verify()
    assert report.ok
    assert report.erased == 4


def test_a_record_after_erasure_gets_a_new_key(backend: Backend) -> None:
    log = backend.log()
    populate(log)
    log.erase(ERASED)

    log.append_batch(consumed([record(20, account=ERASED)], start=20), {})

    assert [(v.index, v.personal) for v in views(backend, log, account_id=ERASED)] == [
        (8, PersonalStatus.OPENED)
    ]
    assert backend.verify().ok


def test_verify_tells_erased_entries_from_missing_payloads(backend: Backend) -> None:
    log = backend.log()
    populate(log)
    log.erase(ERASED)
    backend.disable_triggers("payloads")
    backend.owner("DELETE FROM payloads WHERE idx = ?", [3])

    report = backend.verify()

    assert [(p.index, p.code) for p in report.problems] == [(3, ProblemCode.PAYLOAD_MISSING)]
    assert report.erased == 4


def test_payloads_cannot_be_deleted_before_an_erasure_entry_lists_them(backend: Backend) -> None:
    log = backend.log()
    populate(log)

    with pytest.raises(Exception, match="only erased payloads may be deleted"):
        log.store.delete_erased_payloads([0, 2])

    assert backend.verify().ok


def test_a_redelivery_after_erasure_creates_no_key(backend: Backend) -> None:
    log = backend.log()
    records = [record(n, account=ERASED if n % 2 == 0 else KEPT) for n in range(6)]
    batch = consumed(records)
    log.append_batch(batch, next_positions(batch))
    log.erase(ERASED)

    again = log.append_batch(batch, next_positions(batch))

    assert again.appended == ()
    tag = backend.index_key.account_tag(ERASED)
    assert backend.keys().keys_for_tags([tag], create=False) == {}
