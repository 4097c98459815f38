"""Verifying an ingested log in parallel: the same report as the serial verification.

The log is appended as the ingest does (batches of realistic records over three partitions)
on each store; helper processes then verify segments of it on their own connections
(PostgreSQL: on the exported snapshot). Intact, erased or tampered, the parallel report must
equal the serial one.
"""

from __future__ import annotations

import pytest
from audit_sink.plan import ConsumedRecord
from audit_sink.samples import sample_records
from audit_sink.verification import verify_log
from audit_sink.verify import Report
from sharing_guard.codec import contract_registry
from test_audit_support import (
    Backend,
    backend,  # noqa: F401
    next_positions,
    pg_names,  # noqa: F401
)

ENTRIES = 600
SEGMENT = 64


def ingested(on: Backend) -> list[str]:
    """Append ENTRIES records in batches of 150 (as the ingest does); return the accounts."""
    registry = contract_registry()
    records = list(sample_records(ENTRIES, seed=11))
    batch = [
        ConsumedRecord("governance.audit", n % 3, n // 3, registry.encode(r))
        for n, r in enumerate(records)
    ]
    log = on.log()
    for start in range(0, ENTRIES, 150):
        part = batch[start : start + 150]
        log.append_batch(part, next_positions(part))
    return [r.account_id for r in records if r.account_id is not None]


def both(on: Backend) -> tuple[Report, Report]:
    """(serial report, parallel report) of one snapshot each."""
    reports = []
    for workers in (1, 2):
        store = on.open_reader()
        try:
            with store.reader() as reader:
                reports.append(
                    verify_log(
                        reader,
                        trusted_keys=[on.verifier],
                        origin=on.origin,
                        workers=workers,
                        segment_size=SEGMENT,
                    )
                )
        finally:
            store.close()
    return reports[0], reports[1]


def test_an_intact_and_erased_log_verifies_the_same_in_parallel(backend: Backend) -> None:  # noqa: F811
    accounts = ingested(backend)
    serial, parallel = both(backend)
    assert serial.ok
    assert parallel == serial

    backend.log().erase(accounts[0])
    serial, parallel = both(backend)
    assert serial.ok
    assert serial.erased > 0
    assert parallel == serial


@pytest.mark.parametrize(
    ("table", "column", "index", "delete"),
    [
        ("leaves", "leaf", 200, False),
        ("payloads", "sealed", 301, False),
        ("payloads", "", 302, True),
    ],
)
def test_a_tampered_log_gets_the_serial_report_in_parallel(
    backend: Backend,  # noqa: F811
    table: str,
    column: str,
    index: int,
    delete: bool,
) -> None:
    ingested(backend)
    backend.disable_triggers(table)
    ((index,),) = backend.owner(f"SELECT min(idx) FROM {table} WHERE idx >= ?", [index])
    if delete:
        backend.owner(f"DELETE FROM {table} WHERE idx = ?", [index])
    else:
        ((value,),) = backend.owner(f"SELECT {column} FROM {table} WHERE idx = ?", [index])
        backend.owner(
            f"UPDATE {table} SET {column} = ? WHERE idx = ?", [bytes(value) + b"!", index]
        )

    serial, parallel = both(backend)

    assert not serial.ok
    assert parallel == serial
