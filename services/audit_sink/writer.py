"""The log writer: appends consumed batches and erasures, and signs checkpoints.

:class:`AuditLog` is what the Kafka ingest calls:

* :meth:`AuditLog.append_batch` plans a batch (:mod:`audit_sink.plan`), seals personal
  data, encodes and chains the leaves, stores them with the consumed positions and, by the
  :class:`CheckpointPolicy`, a signed checkpoint: all in **one** transaction under the
  writer lock. Only then is the checkpoint written to the external archive, and only then
  may the consumer commit its offsets.
* :meth:`AuditLog.committed_positions` tells the consumer where to resume after a crash.
* :meth:`AuditLog.erase` appends an erasure entry, destroys the account's key, then deletes
  its ciphertexts (the one deletion the store allows, for erased entries only).

Never signing a checkpoint inconsistent with one already signed: the writer's tree is
restored from the latest signed checkpoint's compact range (whose root must equal the
signed root) and extended only with the leaves appended after it, each re-hashed and
checked; and the database must agree with the external archive (not behind it, no other
note at an archived size). Otherwise the writer refuses to append (:class:`WriterError`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from sharing_guard.codec import DecodeError, contract_registry
from sharing_guard.contract.audit import AuditRecord

from audit_sink.archive import CheckpointArchive
from audit_sink.canonical import canonical_json
from audit_sink.checkpoint import (
    Checkpoint,
    NoteError,
    NoteSigner,
    open_checkpoint,
    sign_checkpoint,
)
from audit_sink.keystore import KeyStore
from audit_sink.leaf import (
    HEADER,
    ZERO_HASH,
    AnomalyCode,
    EntryType,
    Source,
    anomaly_body,
    encode_leaf,
    erasure_body,
    millis,
    record_body,
    sealed_plaintext,
)
from audit_sink.merkle import HASH_SIZE, CompactRange, leaf_hash
from audit_sink.plan import ConsumedRecord, PlannedAnomaly, PlannedRecord, Skipped, plan_batch
from audit_sink.sealing import IndexKey, SubjectKey, payload_aad, payload_digest, seal
from audit_sink.store import (
    AppendRows,
    CheckpointRow,
    LeafRow,
    LogStore,
    LogTransaction,
    PayloadRow,
    RecordRow,
    StoreError,
    TopicPartition,
)

__all__ = [
    "AppendResult",
    "Appended",
    "AuditLog",
    "CheckpointPolicy",
    "ErasureResult",
    "WriterError",
    "decode_audit_record",
]

_log = logging.getLogger(__name__)


class WriterError(StoreError):
    """The writer refuses to append: the stored log is not what it signed."""


def decode_audit_record(data: bytes) -> AuditRecord:
    """Decode a single-object-encoded AuditRecord (``DecodeError`` for anything else)."""
    value = contract_registry().decode(data)
    if not isinstance(value, AuditRecord):
        raise DecodeError(f"a {type(value).__name__} record, not an AuditRecord")
    return value


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class CheckpointPolicy:
    """When to sign: at the end of every batch, and/or once ``every`` entries are unsigned."""

    every: int = 1000
    each_batch: bool = True

    def due(self, unsigned: int) -> bool:
        """Whether a batch leaving ``unsigned`` entries after the last checkpoint signs."""
        return unsigned > 0 and (self.each_batch or unsigned >= self.every)


@dataclass(frozen=True)
class Appended:
    """One entry appended: its index, type, source, event id and anomaly code."""

    index: int
    type: EntryType
    source: Source | None
    event_id: str | None
    anomaly: AnomalyCode | None = None


@dataclass(frozen=True)
class AppendResult:
    """What :meth:`AuditLog.append_batch` did."""

    appended: tuple[Appended, ...]
    skipped: tuple[Skipped, ...]
    size: int
    checkpoint: Checkpoint | None
    archived: bool


@dataclass(frozen=True)
class ErasureResult:
    """What :meth:`AuditLog.erase` did (counts only: never the account)."""

    erasure_index: int | None
    erased_entries: int
    keys_destroyed: int
    payloads_deleted: int


@dataclass(frozen=True)
class _Head:
    """The writer's view of the log: its tree, last leaf hash and latest checkpoint."""

    tree: CompactRange
    last_hash: bytes
    checkpoint: CheckpointRow | None


class AuditLog:
    """Appends to one log; safe against other writers through the store's writer lock."""

    def __init__(
        self,
        *,
        store: LogStore,
        keys: KeyStore,
        index_key: IndexKey,
        signer: NoteSigner,
        archive: CheckpointArchive | None,
        policy: CheckpointPolicy | None = None,
        decode: Callable[[bytes], AuditRecord] = decode_audit_record,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        """Wire the writer; the signer's key name must be the store's origin."""
        if signer.name != store.origin:
            raise ValueError("the signing key's name must be the log origin")
        self.store = store
        self._keys = keys
        self._index_key = index_key
        self._signer = signer
        self._verifier = signer.verifier()
        self._archive = archive
        self._policy = policy or CheckpointPolicy()
        self._decode = decode
        self._clock = clock
        self._head: _Head | None = None

    @property
    def origin(self) -> str:
        """The log's origin (its checkpoints' first line)."""
        return self.store.origin

    # -- ingest --------------------------------------------------------------------------

    def append_batch(
        self, batch: Sequence[ConsumedRecord], positions: Mapping[TopicPartition, int]
    ) -> AppendResult:
        """Append a consumed batch and store the consumer ``positions``, in one transaction.

        ``positions`` maps each (topic, partition) to the next offset to consume. Entries are
        appended per :mod:`audit_sink.plan`; a checkpoint is signed when the policy says so.
        Nothing of the batch is stored if anything fails.
        """
        decode = self._batch_decoder(batch)
        decoded = [r for r in map(decode.get, [m.value for m in batch]) if r is not None]
        tags = {
            self._index_key.account_tag(r.account_id) for r in decoded if r.account_id is not None
        }
        keys = self._keys.keys_for_tags(tags, create=False)
        with self.store.transaction() as txn:
            head = self._sync(txn)
            plan = plan_batch(
                batch,
                next_index=head.tree.size,
                decode=decode,
                raw_mac=self._raw_mac,
                record_mac=self._record_mac,
                seen=txn.source_macs({m.position for m in batch}),
                max_offsets=txn.max_offsets({(m.topic, m.partition) for m in batch}),
                known_records=txn.records_by_audit_id({r.audit_id for r in decoded}),
            )
            self._create_missing_keys(plan.entries, keys)
            rows, appended, tree, last_hash = self._materialise(plan.entries, head, keys)
            txn.append(replace(rows, sources=plan.sources))
            txn.save_positions(positions)
            checkpoint, row = self._maybe_sign(txn, tree, head, force=False)
        self._head = _Head(tree, last_hash, row or head.checkpoint)
        archived = self._archive_checkpoint(row)
        return AppendResult(tuple(appended), plan.skipped, tree.size, checkpoint, archived)

    def committed_positions(self) -> dict[TopicPartition, int]:
        """The consumer positions stored with the last batch (resume from these)."""
        with self.store.reader() as reader:
            return reader.committed_positions()

    def checkpoint(self) -> Checkpoint | None:
        """Sign a checkpoint now if entries are unsigned; return it (``None`` if none due)."""
        with self.store.transaction() as txn:
            head = self._sync(txn)
            checkpoint, row = self._maybe_sign(txn, head.tree, head, force=True)
        if row is not None:
            self._head = _Head(head.tree, head.last_hash, row)
        self._archive_checkpoint(row)
        return checkpoint

    # -- erasure -------------------------------------------------------------------------

    def erase(self, account_id: str) -> ErasureResult:
        """Erase an account: erasure entry first, then its key, then its ciphertexts.

        Idempotent: running it again completes an interrupted erasure without a second
        entry for the same entries.
        """
        tag = self._index_key.account_tag(account_id)
        erasure_index: int | None = None
        with self.store.transaction() as txn:
            head = self._sync(txn)
            indices = txn.payload_indices_for_tag(tag)
            listed = sorted(set(indices) - txn.erased(indices))
            row: CheckpointRow | None = None
            if listed:
                erasure_index = head.tree.size
                leaf = encode_leaf(
                    EntryType.ERASURE,
                    index=erasure_index,
                    prev=head.last_hash,
                    payload_digest=None,
                    source=None,
                    body=erasure_body(listed, self._clock()),
                )
                h = leaf_hash(leaf)
                tree = head.tree.copy()
                tree.append(h)
                txn.append(
                    AppendRows(
                        leaves=[LeafRow(erasure_index, leaf, h)],
                        erased=[(i, erasure_index) for i in listed],
                    )
                )
                _, row = self._maybe_sign(txn, tree, head, force=True)
                head = _Head(tree, h, row)
        self._head = head
        self._archive_checkpoint(row)
        destroyed = self._keys.destroy(tag)
        deleted = self.store.delete_erased_payloads(indices) if indices else 0
        return ErasureResult(erasure_index, len(listed), destroyed, deleted)

    # -- internals -----------------------------------------------------------------------

    def _raw_mac(self, value: bytes | None) -> bytes:
        return self._index_key.content_mac(b"\x00" if value is None else b"\x01" + value)

    def _record_mac(self, record: AuditRecord) -> bytes:
        return self._index_key.content_mac(canonical_json(record.model_dump(mode="json")))

    def _batch_decoder(self, batch: Sequence[ConsumedRecord]) -> _MemoDecoder:
        return _MemoDecoder(self._decode, [m.value for m in batch if m.value is not None])

    def _create_missing_keys(
        self, entries: Sequence[PlannedRecord | PlannedAnomaly], keys: dict[bytes, SubjectKey]
    ) -> None:
        """Create (and commit, before the log commits) the keys of accounts new to the log.

        Only for entries actually appended: a skipped redelivery creates no key.
        """
        accounts = {
            e.record.account_id if isinstance(e, PlannedRecord) else e.account_id
            for e in entries
            if isinstance(e, PlannedRecord) or e.raw is not None
        }
        tags = {self._index_key.account_tag(a) for a in accounts if a is not None}
        missing = tags - keys.keys()
        if missing:
            keys.update(self._keys.keys_for_tags(missing, create=True))

    def _key_for(
        self, account_id: str | None, keys: dict[bytes, SubjectKey]
    ) -> tuple[SubjectKey, bytes | None]:
        if account_id is None:
            return self._keys.orphan_key(), None
        tag = self._index_key.account_tag(account_id)
        key = keys.get(tag)
        if key is None:  # destroyed by an erasure since the batch began: a fresh key
            key = self._keys.keys_for_tags([tag], create=True)[tag]
            keys[tag] = key
        return key, tag

    def _materialise(
        self,
        entries: Sequence[PlannedRecord | PlannedAnomaly],
        head: _Head,
        keys: dict[bytes, SubjectKey],
    ) -> tuple[AppendRows, list[Appended], CompactRange, bytes]:
        leaves: list[LeafRow] = []
        payloads: list[PayloadRow] = []
        records: list[RecordRow] = []
        appended: list[Appended] = []
        prev = head.last_hash
        for entry in entries:
            index = entry.index
            digest: bytes | None = None
            if isinstance(entry, PlannedRecord):
                record = entry.record
                sealed = record.account_id is not None
                if sealed:
                    key, tag = self._key_for(record.account_id, keys)
                    blob = seal(key.key, sealed_plaintext(record), payload_aad(index))
                    digest = payload_digest(blob)
                    payloads.append(PayloadRow(index, key.key_id, tag, blob))
                body = record_body(record, sealed=sealed)
                entry_type = EntryType.RECORD
                records.append(_record_row(index, record, entry.content_mac))
                appended.append(Appended(index, entry_type, entry.source, record.event_id))
            else:
                if entry.raw is not None:
                    key, tag = self._key_for(entry.account_id, keys)
                    blob = seal(key.key, entry.raw, payload_aad(index))
                    digest = payload_digest(blob)
                    payloads.append(PayloadRow(index, key.key_id, tag, blob))
                body = anomaly_body(entry.code, entry.detail, entry.event_id, entry.related_index)
                entry_type = EntryType.ANOMALY
                appended.append(
                    Appended(index, entry_type, entry.source, entry.event_id, entry.code)
                )
            leaf = encode_leaf(
                entry_type,
                index=index,
                prev=prev,
                payload_digest=digest,
                source=entry.source,
                body=body,
            )
            prev = leaf_hash(leaf)
            leaves.append(LeafRow(index, leaf, prev))
        tree = head.tree.copy()
        tree.extend([row.leaf_hash for row in leaves])
        return AppendRows(leaves, payloads, records), appended, tree, prev

    def _maybe_sign(
        self, txn: LogTransaction, tree: CompactRange, head: _Head, *, force: bool
    ) -> tuple[Checkpoint | None, CheckpointRow | None]:
        signed = head.checkpoint.size if head.checkpoint is not None else 0
        unsigned = tree.size - signed
        if unsigned <= 0 or not (force or self._policy.due(unsigned)):
            return None, None
        root = tree.root()
        note = sign_checkpoint(self.origin, tree.size, root, self._signer)
        row = CheckpointRow(tree.size, note, b"".join(tree.peaks))
        txn.add_checkpoint(row)
        return Checkpoint(self.origin, tree.size, root), row

    def _archive_checkpoint(self, row: CheckpointRow | None) -> bool:
        """Write a committed checkpoint to the archive; on failure, catch up later."""
        if self._archive is None or row is None:
            return self._archive is None
        try:
            self._archive.write(row.size, row.note)
        except OSError as exc:
            _log.error("checkpoint %d not archived (%s); will retry", row.size, type(exc).__name__)
            self._head = None  # the next transaction reloads and catches the archive up
            return False
        return True

    def _sync(self, txn: LogTransaction) -> _Head:
        """The head of the stored log, checked against what this writer signed."""
        size, stored_last = txn.head()
        latest = txn.latest_checkpoint()
        head = self._head
        if (
            head is not None
            and head.tree.size == size
            and (size == 0 or stored_last == head.last_hash)
            and latest == head.checkpoint
        ):
            return head
        head = self._load(txn, size, latest)
        self._check_archive(txn, latest)
        self._head = head
        return head

    def _load(self, txn: LogTransaction, size: int, latest: CheckpointRow | None) -> _Head:
        if latest is None:
            tree = CompactRange()
        else:
            try:
                checkpoint = open_checkpoint(latest.note, [self._verifier], origin=self.origin)
            except NoteError as exc:
                raise WriterError(f"the latest stored checkpoint does not verify: {exc}") from None
            peaks = [
                latest.peaks[i : i + HASH_SIZE] for i in range(0, len(latest.peaks), HASH_SIZE)
            ]
            try:
                tree = CompactRange.from_state(latest.size, peaks)
            except ValueError:
                raise WriterError(
                    "the latest checkpoint's stored compact range is malformed"
                ) from None
            if checkpoint.size != latest.size or tree.root() != checkpoint.root:
                raise WriterError("the latest checkpoint's compact range is not its signed tree")
            if size < latest.size:
                raise WriterError(
                    f"the log has {size} entries but its latest checkpoint {latest.size} "
                    "(truncated)"
                )
        start = tree.size
        rows = txn.leaf_rows(max(0, start - 1), size)
        last_hash = ZERO_HASH
        for row in rows:
            h = leaf_hash(row.leaf)
            if h != row.leaf_hash:
                raise WriterError(f"entry {row.index} does not match its stored hash")
            if row.index >= start:
                _, _, seq, prev, *_ = HEADER.unpack_from(row.leaf)
                if seq != row.index or prev != last_hash:
                    raise WriterError(f"entry {row.index} is not chained to the entry before it")
                tree.append(h)
            last_hash = h
        if tree.size != size:
            raise WriterError("the stored entries are not contiguous")
        return _Head(tree, last_hash, latest)

    def _check_archive(self, txn: LogTransaction, latest: CheckpointRow | None) -> None:
        """The database must not be behind the archive nor disagree with it; catch it up."""
        if self._archive is None:
            return
        archived = self._archive.latest()
        stored = {row.size: row.note for row in txn.checkpoints()} if latest is not None else {}
        if archived is not None:
            size, note = archived
            if latest is None or size > latest.size:
                raise WriterError(
                    f"the archive holds checkpoint {size}, beyond the database's latest "
                    f"({0 if latest is None else latest.size}): rolled back?"
                )
            if stored.get(size) != note:
                raise WriterError(f"the archive's checkpoint {size} differs from the database's")
        start = archived[0] if archived is not None else -1
        for size in sorted(s for s in stored if s > start):
            self._archive.write(size, stored[size])


class _MemoDecoder:
    """Decodes each distinct value of a batch once (planning asks several times)."""

    def __init__(self, decode: Callable[[bytes], AuditRecord], values: Sequence[bytes]) -> None:
        self._results: dict[bytes, AuditRecord | str] = {}
        for value in values:
            if value not in self._results:
                try:
                    self._results[value] = decode(value)
                except ValueError as exc:
                    self._results[value] = str(exc)

    def get(self, value: bytes | None) -> AuditRecord | None:
        """The record, or ``None`` if the value is absent or does not decode."""
        result = None if value is None else self._results.get(value)
        return result if isinstance(result, AuditRecord) else None

    def __call__(self, value: bytes) -> AuditRecord:
        """The record (``DecodeError`` if it does not decode)."""
        result = self._results.get(value)
        if isinstance(result, AuditRecord):
            return result
        raise DecodeError(result if result is not None else "value not in the batch")


def _record_row(index: int, record: AuditRecord, content_mac: bytes) -> RecordRow:
    codes = [reason.code.value for reason in record.reasons]
    return RecordRow(
        index=index,
        audit_id=record.audit_id,
        kind=record.kind.value,
        event_id=record.event_id,
        recipient_id=record.recipient_id,
        order_ref=record.order_ref,
        outcome=None if record.outcome is None else record.outcome.value,
        occurred_at=millis(record.occurred_at),
        reason_codes="," + "".join(f"{code}," for code in codes),
        content_mac=content_mac,
    )
