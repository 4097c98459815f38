"""Parallel verification's halves: segment summaries and joining them, against the serial path.

For an intact log (records, anomalies, unsealed records, erasures, checkpoints anywhere,
trusted checkpoints), joining the summaries of aligned segments must give exactly the serial
report. For a tampered log, some summary or the join must refuse (so that the caller verifies
serially, which pins the problem), or a sealed entry must be left without payload.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest
from audit_log_builder import ORIGIN, SIGNER, MemoryLog, build
from audit_sink.leaf import HEADER_SIZE
from audit_sink.merkle import leaf_hash
from audit_sink.verify import LogVerifier, Report, StoredCheckpoint, summarise_segment
from hypothesis import given, settings
from hypothesis import strategies as st


def verifier(log: MemoryLog, trusted: tuple[str, ...] = ()) -> LogVerifier:
    return LogVerifier(
        trusted_keys=[SIGNER.verifier()],
        origin=ORIGIN,
        checkpoints=[StoredCheckpoint(c.size, c.note) for c in log.checkpoints],
        trusted_checkpoints=trusted,
    )


def by_segments(log: MemoryLog, segment: int, trusted: tuple[str, ...] = ()) -> Report | None:
    """The parallel path's result, or ``None`` where it hands over to the serial path."""
    joined = verifier(log, trusted)
    sizes = joined.target_sizes()
    payloads = sorted(log.payloads.items())
    if any(not 0 <= i < log.size for i, _ in payloads):
        return None  # as verify_log: payloads outside the log go to the serial path
    for start in range(0, log.size, segment):
        end = min(start + segment, log.size)
        rows = log.rows[start:end]
        paid = [(i, p) for i, p in payloads if start <= i < end]
        inside = [c for c in sizes if start < c <= end]
        if not joined.add_segment(summarise_segment(start, end, rows, paid, inside)):
            return None
    if joined.unexcused_missing():
        return None
    return joined.finish()


def intact_log() -> MemoryLog:
    log = build(records=37, every=6)
    log.anomaly()
    log.record(partition=1, sealed=False)
    log.erasure([0, 5, 9])
    log.record(partition=2)
    log.sign()
    log.erasure([2, 37])
    log.record()
    log.sign()
    return log


@pytest.mark.parametrize("segment", [1, 2, 4, 8, 16, 32, 64])
def test_joined_segments_give_the_serial_report(segment: int) -> None:
    log = intact_log()
    trusted = (log.checkpoints[2].note, log.checkpoints[-1].note)

    expected = log.verify(trusted=trusted)
    got = by_segments(log, segment, trusted)

    assert expected.ok
    assert got == expected


@settings(max_examples=60, deadline=None)
@given(st.integers(5, 80), st.integers(1, 9), st.sampled_from([1, 2, 4, 8, 16]))
def test_any_intact_log_joins_to_the_serial_report(records: int, every: int, segment: int) -> None:
    log = build(records=records, every=every)
    assert by_segments(log, segment) == log.verify()


def edit_leaf(log: MemoryLog, index: int, recompute: bool) -> None:
    i, leaf, stored = log.rows[index]
    forged = (
        leaf[: HEADER_SIZE + 20] + bytes([leaf[HEADER_SIZE + 20] ^ 1]) + leaf[HEADER_SIZE + 21 :]
    )
    log.rows[index] = (i, forged, leaf_hash(forged) if recompute else stored)


def swap(log: MemoryLog, a: int, b: int) -> None:
    (_, leaf_a, hash_a), (_, leaf_b, hash_b) = log.rows[a], log.rows[b]
    log.rows[a], log.rows[b] = (a, leaf_b, hash_b), (b, leaf_a, hash_a)


TAMPERING: dict[str, Callable[[MemoryLog], object]] = {
    "leaf byte": lambda log: edit_leaf(log, 11, recompute=False),
    "leaf byte, hash recomputed": lambda log: edit_leaf(log, 11, recompute=True),
    "last leaf, hash recomputed": lambda log: edit_leaf(log, len(log.rows) - 1, recompute=True),
    "entry deleted": lambda log: log.rows.pop(13),
    "entries swapped": lambda log: swap(log, 7, 8),
    "payload edited": lambda log: log.payloads.__setitem__(3, b"forged"),
    "payload deleted": lambda log: log.payloads.pop(4),
    "orphan payload": lambda log: log.payloads.__setitem__(38, b"x"),
    "erased entry listed twice": lambda log: log.erasure([0]),
    "tail truncated": lambda log: log.rows.pop(),
    "checkpoint forged": lambda log: log.checkpoints.append(
        StoredCheckpoint(log.size + 1, log.checkpoints[-1].note)
    ),
}


@pytest.mark.parametrize("name", sorted(TAMPERING))
@pytest.mark.parametrize("segment", [1, 4, 16])
def test_tampering_never_joins_to_an_intact_report(name: str, segment: int) -> None:
    log = intact_log()
    TAMPERING[name](log)
    serial = log.verify()
    assert not serial.ok

    joined = by_segments(log, segment)

    assert joined is None or joined == serial, name


def test_a_summary_is_refused_when_its_payload_does_not_match() -> None:
    log = build(records=8, every=4)
    rows = log.rows[0:8]
    payloads = sorted(log.payloads.items())
    good = summarise_segment(0, 8, rows, payloads, [4, 8])
    assert good.clean
    bad = [(i, hashlib.sha256(p).digest()) for i, p in payloads]
    assert not summarise_segment(0, 8, rows, bad, [4, 8]).clean
    assert not summarise_segment(0, 8, rows[:-1], payloads, [4, 8]).clean
