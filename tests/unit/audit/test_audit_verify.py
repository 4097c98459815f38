"""The pure verifier: every check, the blame rules, and agreement with the standalone verifier.

Logs are built in memory (``audit_log_builder``); tampering edits the rows as an attacker
with the database would. The same tampered logs, laid out as exports, go through
``verify_export.py``: both verifiers must name the same first bad entry.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
from audit_log_builder import ORIGIN, SIGNER, MemoryLog, build
from audit_sink.checkpoint import NoteSigner
from audit_sink.leaf import HEADER_SIZE, EntryType, encode_leaf
from audit_sink.merkle import leaf_hash
from audit_sink.verify import ProblemCode, Report
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

STANDALONE = Path(__file__).resolve().parents[3] / "services/audit_sink/standalone/verify_export.py"


def standalone() -> ModuleType:
    spec = importlib.util.spec_from_file_location("verify_export_under_test", STANDALONE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def standalone_first(log: MemoryLog, directory: Path, trusted: list[Path] | None = None) -> str:
    log.write_export(directory)
    args = [str(directory), "--vkey", SIGNER.verifier().vkey]
    for path in trusted or []:
        args += ["--trusted-checkpoint", str(path)]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        standalone().main(args)
    return out.getvalue().splitlines()[0]


def first_index(report: Report) -> int | None:
    return None if report.first is None else report.first.index


def reset(log: MemoryLog, index: int, leaf: bytes, stored: bytes | None = None) -> None:
    log.rows[index] = (index, leaf, leaf_hash(leaf) if stored is None else stored)


def flip(data: bytes, position: int) -> bytes:
    return data[:position] + bytes([data[position] ^ 0x01]) + data[position + 1 :]


# -- intact logs ----------------------------------------------------------------------------


@pytest.mark.parametrize("chunk", [1, 3, 7, 1000])
def test_an_intact_log_verifies_in_any_chunking(chunk: int) -> None:
    log = build(records=23, every=4)

    report = log.verify(chunk=chunk)

    assert report.ok, report.problems
    assert (report.size, report.erased, report.unsigned_tail) == (23, 0, 0)
    assert report.checkpoints_verified == 6
    assert report.latest_checkpoint is not None
    assert report.latest_checkpoint.size == 23


def test_payloads_may_arrive_before_their_leaves() -> None:
    assert build().verify(payloads_first=True).ok


def test_entries_after_the_last_checkpoint_are_reported_as_unsigned() -> None:
    log = build(records=10, every=5)
    log.record()
    log.record()

    report = log.verify()

    assert report.ok
    assert report.unsigned_tail == 2


# -- blame rules ----------------------------------------------------------------------------


def test_an_edited_entry_with_a_recomputed_hash_is_blamed_not_its_successor() -> None:
    log = build()
    leaf = log.rows[6][1].replace(b'"BLOCK"', b'"ALLOW"')
    reset(log, 6, leaf)

    report = log.verify()

    assert report.first is not None
    assert (report.first.index, report.first.code) == (6, ProblemCode.CHAIN_BREAK)


def test_an_entry_whose_own_link_was_edited_is_blamed_itself() -> None:
    log = build()
    leaf = log.rows[6][1]
    reset(log, 6, leaf[:10] + hashlib.sha256(b"elsewhere").digest() + leaf[42:])

    report = log.verify()

    assert report.first is not None
    assert (report.first.index, report.first.code) == (6, ProblemCode.CHAIN_BREAK)


def test_a_root_mismatch_only_bounds_the_bad_entry() -> None:
    log = build(records=20, every=5)
    last = log.rows[19][1].replace(b'"BLOCK"', b'"ALLOW"')
    reset(log, 19, last)  # the last entry: no successor to chain it

    report = log.verify()

    assert report.first is not None
    assert report.first.code == ProblemCode.ROOT_MISMATCH
    assert report.first.bound
    assert (report.first.index, report.first.range_end) == (15, 20)


def test_a_record_offset_going_backwards_is_pinned() -> None:
    log = MemoryLog()
    log.record(partition=0)
    log.record(partition=0)
    log.offsets[0] = -1  # the next record repeats offset 2
    log.record(partition=0)
    log.sign()

    report = log.verify()

    assert report.first is not None
    assert (report.first.index, report.first.code) == (2, ProblemCode.OFFSET_ORDER)


# -- payloads and erasures ------------------------------------------------------------------


def test_erased_entries_are_counted_and_missing_ones_reported() -> None:
    log = build(records=12, every=4)
    log.erasure([0, 5])
    log.sign()
    del log.payloads[6]

    report = log.verify()

    assert report.erased == 2
    assert [(p.index, p.code) for p in report.problems] == [(6, ProblemCode.PAYLOAD_MISSING)]


def test_an_erased_entry_may_keep_its_ciphertext() -> None:
    log = build(records=8, every=4)
    log.erasure([1, 2], delete=False)
    log.sign()

    report = log.verify()

    assert report.ok
    assert report.erased == 2


@pytest.mark.parametrize(
    ("listed", "why"),
    [
        ([2, 1], "not increasing earlier entries"),
        ([99], "not increasing earlier entries"),
        ([3], "has no payload"),  # entry 3 was not sealed (every fourth record is not)
    ],
)
def test_malformed_erasure_entries_are_reported(listed: list[int], why: str) -> None:
    log = build(records=8, every=4)
    index = log.size
    leaf = encode_leaf(
        EntryType.ERASURE,
        index=index,
        prev=log.rows[-1][2],
        payload_digest=None,
        source=None,
        body={"erased": listed, "erased_at": 0},
    )
    log.rows.append((index, leaf, leaf_hash(leaf)))
    log.sign()

    report = log.verify()

    assert report.first is not None
    assert (report.first.index, report.first.code) == (index, ProblemCode.BAD_ERASURE)
    assert why in report.first.message


def test_erasing_an_entry_twice_is_reported() -> None:
    log = build(records=8, every=4)
    log.erasure([0])
    second = log.erasure([0, 1], delete=False)
    log.sign()

    report = log.verify()

    assert report.first is not None
    assert (report.first.index, report.first.code) == (second, ProblemCode.BAD_ERASURE)


def test_a_payload_for_an_unsealed_entry_is_an_orphan() -> None:
    log = build(records=8, every=4)
    log.payloads[3] = b"planted"

    report = log.verify()

    assert [(p.index, p.code) for p in report.problems] == [(3, ProblemCode.ORPHAN_PAYLOAD)]


# -- checkpoints ----------------------------------------------------------------------------


def test_checkpoints_by_unknown_keys_or_for_another_size_are_invalid() -> None:
    log = build(records=10, every=5)
    stranger = NoteSigner.generate(ORIGIN)
    log.checkpoints[0] = type(log.checkpoints[0])(5, log.checkpoints[1].note)
    log.checkpoints.append(type(log.checkpoints[0])(10, log.sign(stranger)))

    report = log.verify()

    codes = {(p.code, p.checkpoint_size) for p in report.problems}
    assert codes == {(ProblemCode.CHECKPOINT_INVALID, 5), (ProblemCode.CHECKPOINT_INVALID, 10)}


def test_a_checkpoint_beyond_the_end_means_truncation() -> None:
    log = build(records=10, every=5)
    del log.rows[7:]

    report = log.verify()

    assert report.first is not None
    assert (report.first.index, report.first.code) == (7, ProblemCode.TRUNCATED)


def test_a_trusted_checkpoint_that_does_not_verify_is_reported() -> None:
    log = build(records=10, every=5)
    forged = log.checkpoints[-1].note.replace(ORIGIN, ORIGIN + "x", 1)

    report = log.verify(trusted=[forged])

    assert ProblemCode.TRUSTED_CHECKPOINT_INVALID in {p.code for p in report.problems}


# -- fast path, slow path and the standalone verifier agree ---------------------------------


def _edit_leaf(log: MemoryLog, i: int) -> None:
    reset(log, i, flip(log.rows[i][1], len(log.rows[i][1]) - 3), log.rows[i][2])


def _edit_leaf_rehash(log: MemoryLog, i: int) -> None:
    reset(log, i, log.rows[i][1].replace(b'"rcp-1"', b'"rcp-2"'))


def _swap(log: MemoryLog, i: int) -> None:
    j = (i + 3) % log.size
    (_, a, ha), (_, b, hb) = log.rows[i], log.rows[j]
    log.rows[i], log.rows[j] = (i, b, hb), (j, a, ha)


def _delete(log: MemoryLog, i: int) -> None:
    del log.rows[i]


def _renumber_after_delete(log: MemoryLog, i: int) -> None:
    del log.rows[i]
    log.rows = [(n, leaf, h) for n, (_, leaf, h) in enumerate(log.rows)]


def _edit_payload(log: MemoryLog, i: int) -> None:
    if i in log.payloads:
        log.payloads[i] = flip(log.payloads[i], 0)
    else:
        log.payloads[i] = b"orphan"


def _edit_header(log: MemoryLog, i: int) -> None:
    reset(log, i, flip(log.rows[i][1], HEADER_SIZE - 10))  # an offset byte


TAMPERS: dict[str, Callable[[MemoryLog, int], None]] = {
    "edit leaf": _edit_leaf,
    "edit leaf and rehash": _edit_leaf_rehash,
    "swap": _swap,
    "delete": _delete,
    "delete and renumber": _renumber_after_delete,
    "edit payload": _edit_payload,
    "edit header": _edit_header,
}


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    tampers=st.lists(
        st.tuples(st.sampled_from(sorted(TAMPERS)), st.integers(0, 21)), min_size=0, max_size=3
    ),
    chunk=st.sampled_from([1, 4, 9, 64]),
)
def test_fast_and_slow_paths_and_the_standalone_verifier_agree(
    tampers: list[tuple[str, int]], chunk: int, tmp_path_factory: pytest.TempPathFactory
) -> None:
    log = build(records=22, every=5, partitions=2)
    for name, position in tampers:
        TAMPERS[name](log, position % log.size)

    fast = log.verify(chunk=chunk)
    slow = log.verify(chunk=chunk, slow_only=True)
    exported = log.verify(chunk=chunk, rehash=True)  # the information an export carries
    line = standalone_first(log, tmp_path_factory.mktemp("export"))

    assert fast.problems == slow.problems
    assert fast.ok == exported.ok
    if exported.ok:
        assert line.startswith("OK")
    else:
        assert line.startswith(f"FAIL: first bad entry {first_index(exported)}:")


def test_the_standalone_verifier_uses_trusted_checkpoints(tmp_path: Path) -> None:
    log = build(records=10, every=5)
    trusted = tmp_path / "trusted.note"
    trusted.write_text(log.checkpoints[-1].note, "utf-8")
    del log.rows[8:]
    log.payloads = {i: p for i, p in log.payloads.items() if i < 8}
    log.checkpoints.pop()

    assert log.verify().ok
    assert standalone_first(log, tmp_path / "export", [trusted]).startswith(
        "FAIL: first bad entry 8:"
    )
