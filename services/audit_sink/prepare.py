"""Preparing consumed values for the writer: the work that needs no database (pure).

For each consumed value :func:`prepare_values` computes what does not depend on the log's
state: the keyed MAC of the raw bytes (to recognise a redelivery at the same position), the
decoded record (:mod:`audit_sink.fastdecode`), its content MAC (the keyed MAC of the
canonical JSON of ``record.model_dump(mode="json")``, to recognise the same record published
again), its account's keyed tag, and the canonical texts the entry is made of: the leaf body
(:func:`audit_sink.leaf.record_body`) and, for a record naming an account, the plaintext to
seal (:func:`audit_sink.leaf.sealed_plaintext`). Only what depends on the entry's index
(sealing, whose associated data binds the index, the leaf header, the chain) is left to the
writer, under its lock.

Being pure and picklable, preparation can run in a helper process while the writer stores
the previous batch (:class:`audit_sink.ingest.Ingestor` does).

The canonical texts are assembled from the JSON encodings of their values, in the fixed
sorted order of their keys, which is what :func:`audit_sink.canonical.canonical_json`
produces for these dicts (``tests/unit/audit/test_audit_prepare.py`` checks it on every
shape of record), with the event's JSON, the longest value, escaped once for all three.
"""

from __future__ import annotations

import gc
import marshal
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from json.encoder import encode_basestring_ascii
from typing import Any, Final, NamedTuple

from sharing_guard.contract.audit import AuditRecord

from audit_sink.fastdecode import AuditDecoder, RecordJson
from audit_sink.leaf import millis
from audit_sink.sealing import IndexKey

__all__ = ["PreparePool", "Prepared", "PreparedRecord", "prepare_values", "record_texts"]

_ESCAPE: Final[Callable[[str], str]] = encode_basestring_ascii
_SEALED: Final = '"sealed":["account_id","event_json"]}'
_UNSEALED: Final = '"sealed":[]}'


class PreparedRecord(NamedTuple):
    """A decoded record, as the writer needs it (no model: compact and picklable)."""

    audit_id: str
    event_id: str
    account_id: str | None
    account_tag: bytes | None
    content_mac: bytes
    body: bytes
    """The canonical JSON leaf body (sealed iff the record names an account)."""
    plaintext: bytes | None
    """The canonical JSON to seal, when the record names an account."""
    kind: str
    recipient_id: str | None
    order_ref: str | None
    outcome: str | None
    occurred_at: int
    reason_codes: str
    row: tuple[str, str, str, str | None, str | None, str | None, int, str, bytes]
    """The record's ``records`` row but its index: ``audit_id, kind, event_id,
    recipient_id, order_ref, outcome, occurred_at, reason_codes, content_mac`` (the writer
    puts the index in front)."""

    def __reduce__(self) -> tuple[Any, ...]:
        """Unpickle without the Python-level ``__new__`` (thousands come back per batch)."""
        return (tuple.__new__, (PreparedRecord, tuple(self)))


class Prepared(NamedTuple):
    """One consumed value, prepared: its raw MAC and its record or why it has none."""

    raw_mac: bytes
    record: PreparedRecord | None
    error: str | None

    def __reduce__(self) -> tuple[Any, ...]:
        """Unpickle without the Python-level ``__new__`` (thousands come back per batch)."""
        return (tuple.__new__, (Prepared, tuple(self)))


def _text(value: str | None) -> str:
    return "null" if value is None else _ESCAPE(value)


def record_texts(as_json: RecordJson, occurred_ms: int) -> tuple[bytes, bytes, bytes | None]:
    """(content MAC input, leaf body, plaintext to seal) of a record's JSON form.

    The same bytes as ``canonical_json(as_json)``, ``canonical_json(record_body(record,
    sealed=...))`` and ``sealed_plaintext(record)`` (``None`` when the record names no
    account, which is then not sealed).
    """
    # Each text is built in one f-string (no chain of partial copies of the event's JSON).
    esc = _ESCAPE
    account = as_json["account_id"]
    event_json = esc(as_json["event_json"])
    reasons = ",".join(
        f'{{"clause":{esc(r["clause"])},"code":{esc(r["code"])}}}' for r in as_json["reasons"]
    )
    middle = f',"event_type":{esc(as_json["event_type"])},"kind":{esc(as_json["kind"])}'
    tail = (
        f',"order_ref":{_text(as_json["order_ref"])}'
        f',"outcome":{_text(as_json["outcome"])}'
        f',"policy_version":{_text(as_json["policy_version"])}'
        f',"reasons":[{reasons}]'
        f',"recipient_id":{_text(as_json["recipient_id"])}'
    )
    head = (
        f'"actor":{_text(as_json["actor"])}'
        f',"audit_id":{esc(as_json["audit_id"])}'
        f',"event_id":{esc(as_json["event_id"])}'
    )
    account_text = _text(account)
    mac_input = (
        f'{{"account_id":{account_text},{head},"event_json":{event_json}{middle}'
        f',"occurred_at":{esc(as_json["occurred_at"])}{tail}}}'
    )
    sealed = account is not None
    body = (
        f'{{{head},"event_json":{"null" if sealed else event_json}{middle}'
        f',"occurred_at":{occurred_ms}{tail},{_SEALED if sealed else _UNSEALED}'
    )
    plaintext = (
        f'{{"account_id":{account_text},"event_json":{event_json}}}'.encode("ascii")
        if sealed
        else None
    )
    return mac_input.encode("ascii"), body.encode("ascii"), plaintext


def prepare_values(
    values: Sequence[bytes | None],
    decode: Callable[[bytes], AuditRecord],
    index_key: IndexKey,
) -> list[Prepared]:
    """Prepare each value (each distinct one once); see the module docstring."""
    decode_json = decode.decode_json if isinstance(decode, AuditDecoder) else None
    done: dict[bytes | None, Prepared] = {}
    tags: dict[str, bytes] = {}
    prepared: list[Prepared] = []
    for value in values:
        found = done.get(value)
        if found is None:
            found = done[value] = _prepare(value, decode, decode_json, index_key, tags)
        prepared.append(found)
    return prepared


def _prepare(
    value: bytes | None,
    decode: Callable[[bytes], AuditRecord],
    decode_json: Callable[[bytes], tuple[RecordJson, int]] | None,
    index_key: IndexKey,
    tags: dict[str, bytes],
) -> Prepared:
    raw_mac = index_key.content_mac(b"\x00" if value is None else b"\x01" + value)
    if value is None:
        return Prepared(raw_mac, None, "the Kafka record has no value")
    try:
        if decode_json is not None:
            as_json, occurred_ms = decode_json(value)
        else:
            record = decode(value)
            as_json = record.model_dump(mode="json")
            occurred_ms = millis(record.occurred_at)
    except ValueError as exc:
        return Prepared(raw_mac, None, str(exc))
    mac_input, body, plaintext = record_texts(as_json, occurred_ms)
    account: str | None = as_json["account_id"]
    tag: bytes | None = None
    if account is not None:
        tag = tags.get(account)
        if tag is None:
            tag = tags[account] = index_key.account_tag(account)
    codes = "".join(f"{reason['code']}," for reason in as_json["reasons"])
    audit_id: str = as_json["audit_id"]
    event_id: str = as_json["event_id"]
    kind: str = as_json["kind"]
    recipient_id: str | None = as_json["recipient_id"]
    order_ref: str | None = as_json["order_ref"]
    outcome: str | None = as_json["outcome"]
    reason_codes = "," + codes
    content_mac = index_key.content_mac(mac_input)
    return Prepared(
        raw_mac,
        PreparedRecord(
            audit_id,
            event_id,
            account,
            tag,
            content_mac,
            body,
            plaintext,
            kind,
            recipient_id,
            order_ref,
            outcome,
            occurred_ms,
            reason_codes,
            (
                audit_id,
                kind,
                event_id,
                recipient_id,
                order_ref,
                outcome,
                occurred_ms,
                reason_codes,
                content_mac,
            ),
        ),
        None,
    )


_WORKER: dict[str, Any] = {}


def _exit_with_parent() -> None:
    parent = multiprocessing.parent_process()
    if parent is not None:
        multiprocessing.connection.wait([parent.sentinel])
    os._exit(0)


def _start_worker(index_key: IndexKey) -> None:
    # A Ctrl-C reaches the whole process group: the parent decides when the helper stops,
    # and if it dies (SIGKILL) the helper exits at once instead of lingering.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, name="exit-with-parent", daemon=True).start()
    _WORKER["decode"] = AuditDecoder()
    _WORKER["index_key"] = index_key
    gc.freeze()  # what start-up made lives as long as the helper: never rescan it


def _prepare_in_worker(values: list[bytes | None]) -> bytes:
    # As in AuditLog.append_batch: no cycles are made, so no collections while preparing.
    collecting = gc.isenabled()
    gc.disable()
    try:
        prepared = prepare_values(values, _WORKER["decode"], _WORKER["index_key"])
        return marshal.dumps(
            [(p.raw_mac, None if p.record is None else tuple(p.record), p.error) for p in prepared]
        )
    finally:
        if collecting:
            gc.enable()


def _unmarshal(data: bytes) -> list[Prepared]:
    """The helper's answer as :class:`Prepared` values (named tuples made without their
    Python-level ``__new__``: thousands per batch)."""
    new = tuple.__new__
    return [
        new(Prepared, (mac, None if record is None else new(PreparedRecord, record), error))
        for mac, record, error in marshal.loads(data)
    ]


def _forward(source: Future[bytes], target: Future[list[Prepared]]) -> None:
    """Complete ``target`` with ``source``'s outcome (its bytes read as prepared values)."""
    if source.cancelled():
        target.cancel()
        target.set_running_or_notify_cancel()
        return
    failure = source.exception()
    if failure is not None:
        target.set_exception(failure)
        return
    try:
        prepared = _unmarshal(source.result())
    except BaseException as exc:  # an unreadable answer fails the batch's future
        target.set_exception(exc)
        return
    target.set_result(prepared)


class PreparePool:
    """Prepares batches in a helper process, so the writer stores one batch while the next
    is prepared (on another core).

    The helper is *spawned* (a fresh interpreter: nothing of this process's threads, locks
    or connections is inherited) with the index key, and decodes with the contract's
    :class:`~audit_sink.fastdecode.AuditDecoder`: use it only with a writer that decodes
    the same way (the default). Results come back in submission order through futures,
    sent by the helper with :mod:`marshal` (plain tuples of bytes, strings and integers:
    about a quarter of what pickling the named tuples costs the two processes).
    """

    def __init__(self, index_key: IndexKey) -> None:
        """Start the helper process, and wait until it runs."""
        self._pool = ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            initargs=(index_key,),
        )
        # Start the helper now and wait until it runs, not mid-stream (nor inside a timing).
        self._pool.submit(_prepare_in_worker, []).result()

    def submit(self, values: list[bytes | None]) -> Future[list[Prepared]]:
        """Prepare ``values`` in the helper (see :func:`prepare_values`)."""
        prepared: Future[list[Prepared]] = Future()
        self._pool.submit(_prepare_in_worker, values).add_done_callback(
            lambda done: _forward(done, prepared)
        )
        return prepared

    def close(self) -> None:
        """Stop the helper (waiting for the batch in hand)."""
        self._pool.shutdown(wait=True, cancel_futures=True)
