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

import gc
import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, NamedTuple

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sharing_guard.codec import DecodeError, contract_registry
from sharing_guard.contract.audit import AuditRecord

from audit_sink.archive import CheckpointArchive
from audit_sink.checkpoint import (
    Checkpoint,
    NoteError,
    NoteSigner,
    open_checkpoint,
    sign_checkpoint,
)
from audit_sink.fastdecode import AuditDecoder
from audit_sink.keystore import KeyStore
from audit_sink.leaf import (
    HEADER,
    ZERO_HASH,
    AnomalyCode,
    EntryType,
    Source,
    anomaly_body,
    encode_leaf,
    encode_leaf_bytes,
    erasure_body,
)
from audit_sink.merkle import HASH_SIZE, CompactRange, leaf_hash
from audit_sink.plan import (
    ConsumedRecord,
    Plan,
    PlannedAnomaly,
    PlannedRecord,
    Skipped,
    plan_batch,
)
from audit_sink.prepare import Prepared, PreparedRecord, prepare_values
from audit_sink.sealing import (
    IndexKey,
    SubjectKey,
    new_nonces,
    payload_aad,
    payload_digest,
    seal_with,
)
from audit_sink.store import (
    AppendRows,
    CheckpointRow,
    LeafTuple,
    LogStore,
    LogTransaction,
    PayloadTuple,
    Position,
    RecordTuple,
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
_new_tuple: Final = tuple.__new__  # a named tuple without its Python-level __new__


class WriterError(StoreError):
    """The writer refuses to append: the stored log is not what it signed."""


def decode_audit_record(data: bytes) -> AuditRecord:
    """Decode a single-object-encoded AuditRecord (``DecodeError`` for anything else)."""
    value = contract_registry().decode(data)
    if not isinstance(value, AuditRecord):
        raise DecodeError(f"a {type(value).__name__} record, not an AuditRecord")
    return value


def _maybe_seen(
    batch: Sequence[ConsumedRecord], max_offsets: Mapping[TopicPartition, int]
) -> set[Position]:
    """The positions of ``batch`` that may have been consumed already: those at or below
    the largest offset consumed on their partition (every consumed position is stored, so
    one above it is new). A batch that continues its partitions looks up nothing."""
    return {
        m.position
        for m in batch
        if (last := max_offsets.get((m.topic, m.partition))) is not None and m.offset <= last
    }


class _Decoded(dict[bytes | None, PreparedRecord]):
    """The prepared records of a batch's values; looking up a value that has none raises
    :class:`DecodeError` with why (planning logs it as an ``undecodable`` anomaly)."""

    def __init__(self) -> None:
        super().__init__()
        self.errors: dict[bytes | None, str | None] = {}

    def __missing__(self, value: bytes | None) -> PreparedRecord:
        raise DecodeError(self.errors.get(value) or "not an AuditRecord")


def _content_mac(record: PreparedRecord) -> bytes:
    return record.content_mac


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


class Appended(NamedTuple):
    """One entry appended: its index, type, source, event id and anomaly code (a named
    tuple: one is made per entry)."""

    index: int  # type: ignore[assignment]  # the field hides tuple.index
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
        decode: Callable[[bytes], AuditRecord] | None = None,
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
        self._decode: Callable[[bytes], AuditRecord] = decode or AuditDecoder()
        self._clock = clock
        self._head: _Head | None = None

    @property
    def origin(self) -> str:
        """The log's origin (its checkpoints' first line)."""
        return self.store.origin

    # -- ingest --------------------------------------------------------------------------

    def prepare(self, batch: Sequence[ConsumedRecord]) -> list[Prepared]:
        """The part of appending ``batch`` that needs no database (:mod:`audit_sink.prepare`).

        Pure: it may run ahead, in another process, while the previous batch is appended;
        pass the result to :meth:`append_batch` with the same batch.
        """
        return prepare_values([m.value for m in batch], self._decode, self._index_key)

    def append_batch(
        self,
        batch: Sequence[ConsumedRecord],
        positions: Mapping[TopicPartition, int],
        prepared: Sequence[Prepared] | None = None,
    ) -> AppendResult:
        """Append a consumed batch and store the consumer ``positions``, in one transaction.

        ``positions`` maps each (topic, partition) to the next offset to consume. Entries are
        appended per :mod:`audit_sink.plan`; a checkpoint is signed when the policy says so.
        Nothing of the batch is stored if anything fails. ``prepared`` is
        ``self.prepare(batch)``, if it was computed ahead.

        Python's cyclic garbage collector is paused for the call (and restored as it was,
        also when the call raises): a batch makes tens of thousands of short-lived objects
        and no reference cycle, and the full collections they would trigger rescan every
        long-lived object of the process (a tenth of an append's time).
        """
        collecting = gc.isenabled()
        gc.disable()
        try:
            return self._append_batch(batch, positions, prepared)
        finally:
            if collecting:
                gc.enable()

    def _append_batch(
        self,
        batch: Sequence[ConsumedRecord],
        positions: Mapping[TopicPartition, int],
        prepared: Sequence[Prepared] | None,
    ) -> AppendResult:
        if prepared is None:
            prepared = self.prepare(batch)
        if len(prepared) != len(batch):
            raise ValueError("prepared values do not match the batch")
        macs: dict[bytes | None, bytes] = {}
        decoded = _Decoded()
        for m, p in zip(batch, prepared, strict=True):
            macs[m.value] = p.raw_mac
            if p.record is not None:
                decoded[m.value] = p.record
            else:
                decoded.errors[m.value] = p.error
        records = {r.audit_id: r for r in decoded.values()}
        tags = {r.account_tag for r in records.values() if r.account_tag is not None}
        keys = self._keys.keys_for_tags(tags, create=False)

        with self.store.transaction() as txn:
            head = self._sync(txn)
            max_offsets = txn.max_offsets({(m.topic, m.partition) for m in batch})
            plan = plan_batch(
                batch,
                next_index=head.tree.size,
                decode=decoded.__getitem__,
                raw_mac=macs.__getitem__,
                record_mac=_content_mac,
                seen=txn.source_macs(_maybe_seen(batch, max_offsets)),
                max_offsets=max_offsets,
                known_records=txn.records_by_audit_id(records.keys()),
            )
            self._create_missing_keys(plan.entries, keys)
            appended, tree, last_hash = self._store_entries(txn, plan, head, keys)
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
                        leaves=[(erasure_index, leaf, h)],
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

    def _tag(self, account_id: str | None) -> bytes | None:
        return None if account_id is None else self._index_key.account_tag(account_id)

    def _create_missing_keys(
        self, entries: Sequence[_Planned], keys: dict[bytes, SubjectKey]
    ) -> None:
        """Create (and commit, before the log commits) the keys of accounts new to the log.

        Only for entries actually appended: a skipped redelivery creates no key.
        """
        tags = {
            e.record.account_tag if isinstance(e, PlannedRecord) else self._tag(e.account_id)
            for e in entries
            if isinstance(e, PlannedRecord) or e.raw is not None
        }
        missing = {t for t in tags if t is not None} - keys.keys()
        if missing:
            keys.update(self._keys.keys_for_tags(missing, create=True))

    def _key_for(
        self, tag: bytes | None, keys: dict[bytes, SubjectKey]
    ) -> tuple[SubjectKey, bytes | None]:
        if tag is None:
            return self._keys.orphan_key(), None
        key = keys.get(tag)
        if key is None:  # destroyed by an erasure since the batch began: a fresh key
            key = self._keys.keys_for_tags([tag], create=True)[tag]
            keys[tag] = key
        return key, tag

    def _store_entries(
        self,
        txn: LogTransaction,
        plan: Plan[PreparedRecord],
        head: _Head,
        keys: dict[bytes, SubjectKey],
    ) -> tuple[list[Appended], CompactRange, bytes]:
        """Seal, encode, chain and store the planned entries (with every consumed source)."""
        appended: list[Appended] = []
        leaves, payloads, records, prev = self._materialise(
            plan.entries, head.last_hash, keys, {}, appended
        )
        tree = head.tree.copy()
        tree.extend([row[2] for row in leaves])
        txn.append(AppendRows(leaves, payloads, records, plan.sources))
        return appended, tree, prev

    def _materialise(
        self,
        entries: Sequence[_Planned],
        prev: bytes,
        keys: dict[bytes, SubjectKey],
        aeads: dict[str, AESGCM],
        appended: list[Appended],
    ) -> tuple[list[LeafTuple], list[PayloadTuple], list[RecordTuple], bytes]:
        """Seal, encode and chain entries after the one whose leaf hash is ``prev``: one
        pass, one leaf hash each; the rows, and the last leaf hash.

        The rows are plain tuples in their tables' column order; the nonces of the payloads
        are drawn from the system's random source in one call (12 random bytes each, as
        :func:`~audit_sink.sealing.seal` draws them one by one).
        """
        leaves: list[LeafTuple] = []
        payloads: list[PayloadTuple] = []
        records: list[RecordTuple] = []
        record_type = EntryType.RECORD
        nonces = new_nonces(len(entries))
        encode = encode_leaf_bytes
        hash_leaf = leaf_hash
        sha256 = hashlib.sha256
        aad_prefix = payload_aad(0)[:-8]
        key_for = self._key_for
        for n, entry in enumerate(entries):
            index = entry.index
            digest: bytes | None = None
            if isinstance(entry, PlannedRecord):
                record = entry.record
                plaintext = record.plaintext
                if plaintext is not None:
                    tag = record.account_tag
                    key = None if tag is None else keys.get(tag)
                    if key is None:
                        key, tag = key_for(tag, keys)
                    key_id = key.key_id
                    aead = aeads.get(key_id)
                    if aead is None:
                        aead = aeads[key_id] = AESGCM(key.key)
                    nonce = nonces[n]
                    aad = aad_prefix + index.to_bytes(8, "big")  # payload_aad(index)
                    blob = nonce + aead.encrypt(nonce, plaintext, aad)
                    digest = sha256(blob).digest()  # payload_digest(blob)
                    payloads.append((index, key_id, tag, blob))
                records.append((index, *record.row))
                source = entry.source
                appended.append(
                    _new_tuple(Appended, (index, record_type, source, record.event_id, None))
                )
                leaf = encode(record_type, index, prev, digest, source, record.body)
            else:
                if entry.raw is not None:
                    key, tag = key_for(self._tag(entry.account_id), keys)
                    blob = seal_with(AESGCM(key.key), entry.raw, payload_aad(index))
                    digest = payload_digest(blob)
                    payloads.append((index, key.key_id, tag, blob))
                body = anomaly_body(entry.code, entry.detail, entry.event_id, entry.related_index)
                appended.append(
                    Appended(index, EntryType.ANOMALY, entry.source, entry.event_id, entry.code)
                )
                leaf = encode_leaf(
                    EntryType.ANOMALY,
                    index=index,
                    prev=prev,
                    payload_digest=digest,
                    source=entry.source,
                    body=body,
                )
            prev = hash_leaf(leaf)
            leaves.append((index, leaf, prev))
        return leaves, payloads, records, prev

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


_Planned = PlannedRecord[PreparedRecord] | PlannedAnomaly
