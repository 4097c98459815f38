"""The audit sink's composition root: settings in, stores, keys and the writer out.

Nothing else reads settings or chooses adapters; commands (and a future server) ask here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from audit_sink.archive import CheckpointArchive
from audit_sink.checkpoint import KeyFormatError, NoteSigner, NoteVerifier
from audit_sink.heads import heads_origin, shard_origin
from audit_sink.heads_store import HeadsStore
from audit_sink.keystore import KeyStore
from audit_sink.sealing import IndexKey
from audit_sink.settings import AuditSinkSettings, SettingsError
from audit_sink.signing import load_signing_key
from audit_sink.store import LogStore, StoreError
from audit_sink.writer import AuditLog, CheckpointPolicy

if TYPE_CHECKING:
    from audit_sink.heads import MemberHead
    from audit_sink.trail import HeadsPublisher, Member, TrailWriter

__all__ = [
    "build_log",
    "build_trail_writer",
    "discover_members",
    "heads_publisher",
    "index_key",
    "member_origin",
    "open_archive",
    "open_heads_store",
    "open_keystore",
    "open_store",
    "pinned_verifier",
    "signer",
]


def open_store(
    settings: AuditSinkSettings, *, write: bool = True, partition: int | None = None
) -> LogStore:
    """The log store of the configured backend; ``write=False`` for reading only (the
    SQLite file opened read-only, the PostgreSQL reader role if one is set). With a
    ``partition``, the store of that partition's shard (:mod:`audit_sink.heads`)."""
    origin = member_origin(settings, partition)
    if settings.backend == "postgres":
        from audit_sink.store_postgres import PostgresLogStore

        pg = settings.postgres
        role = pg.role if write else pg.reader_role or pg.role
        schema = pg.schema_name if partition is None else settings.shard_schema(partition)
        return PostgresLogStore(settings.postgres_dsn(), schema, origin, role)
    from audit_sink.store_sqlite import SqliteLogStore

    path = settings.log_file() if partition is None else settings.shard_log_file(partition)
    return SqliteLogStore(path, origin, read_only=not write, cache_mb=settings.sqlite.cache_mb)


def member_origin(settings: AuditSinkSettings, partition: int | None) -> str:
    """The origin of the single (or legacy) log, or of the shard of ``partition``."""
    origin = settings.require_origin()
    return origin if partition is None else shard_origin(origin, partition)


def discover_members(settings: AuditSinkSettings) -> list[Member]:
    """The logs the trail holds, in member order: the single (or legacy) log if it holds
    anything (or, with ``sharding=single``, always), then every shard that exists."""
    from audit_sink.trail import Member

    origin = settings.require_origin()
    found: list[Member] = []
    single = settings.sharding == "single"
    if settings.backend == "postgres":
        from audit_sink.heads_store import pg_schemas

        base = settings.postgres.schema_name
        schemas = pg_schemas(settings.postgres_dsn(), base)
        if single or (base in schemas and _holds_entries(settings)):
            found.append(Member(origin, None))
        prefix = f"{base}_shard_"
        partitions = [s[len(prefix) :] for s in schemas if s.startswith(prefix)]
    else:
        if single or (settings.log_file().is_file() and _holds_entries(settings)):
            found.append(Member(origin, None))
        log = settings.log_file()
        prefix, suffix = f"{log.stem}.shard-", log.suffix
        names = [p.name for p in log.parent.glob(f"{prefix}*{suffix}")]
        partitions = [n[len(prefix) : len(n) - len(suffix)] for n in names]
    numbers = sorted(int(p) for p in partitions if p.isdigit() and str(int(p)) == p)
    found.extend(Member(shard_origin(origin, p), p) for p in numbers)
    return found


def _holds_entries(settings: AuditSinkSettings) -> bool:
    """Whether the single log's store exists and holds at least one entry."""
    try:
        store = open_store(settings, write=False)
    except StoreError:
        return False
    try:
        with store.reader() as reader:
            return reader.size() > 0
    finally:
        store.close()


def open_heads_store(settings: AuditSinkSettings, *, write: bool = True) -> HeadsStore:
    """Where the heads notes of a sharded trail are kept (``StoreError`` if not there)."""
    if settings.backend == "postgres":
        from audit_sink.heads_store import PostgresHeadsStore

        pg = settings.postgres
        role = pg.role if write else pg.reader_role or pg.role
        return PostgresHeadsStore(settings.postgres_dsn(), settings.heads_schema(), role)
    from audit_sink.heads_store import SqliteHeadsStore

    return SqliteHeadsStore(settings.heads_file(), read_only=not write)


def open_keystore(settings: AuditSinkSettings) -> KeyStore:
    """The key store of the configured backend (apart from the log)."""
    if settings.backend == "postgres":
        from audit_sink.keystore_postgres import PostgresKeyStore

        pg = settings.postgres
        return PostgresKeyStore(settings.postgres_keys_dsn(), pg.keys_schema, pg.keys_role)
    from audit_sink.keystore_sqlite import SqliteKeyStore

    if settings.keys_file().resolve() == settings.log_file().resolve():
        raise SettingsError("the key store must be a different file from the log")
    return SqliteKeyStore(settings.keys_file())


def open_archive(settings: AuditSinkSettings, partition: int | None = None) -> CheckpointArchive:
    """The external checkpoint archive (of the shard of ``partition``, if given)."""
    if partition is None:
        return CheckpointArchive(settings.archive_dir())
    return CheckpointArchive(settings.shard_archive_dir(partition))


def signer(settings: AuditSinkSettings, name: str | None = None) -> NoteSigner:
    """The checkpoint signer (the key file), named by the origin or by ``name`` (a member's
    or the heads notes' origin: the same key under another name)."""
    return load_signing_key(settings.signing_key_path(), name or settings.require_origin())


def index_key(settings: AuditSinkSettings) -> IndexKey:
    """The secret key of account tags and content MACs."""
    return IndexKey(settings.index_key_bytes())


def pinned_verifier(settings: AuditSinkSettings, vkey: str | None = None) -> NoteVerifier:
    """The log's public key as pinned by ``vkey`` or the setting; never read from the log."""
    text = vkey or settings.vkey
    if not text:
        raise SettingsError("pin the log's public key: --vkey or AUDIT_SINK_VKEY")
    try:
        verifier = NoteVerifier.from_vkey(text.strip())
    except KeyFormatError as exc:
        raise SettingsError(f"invalid vkey: {exc}") from None
    if verifier.name != settings.require_origin():
        raise SettingsError("the vkey's name is not the log origin")
    return verifier


def build_log(
    settings: AuditSinkSettings, store: LogStore, keys: KeyStore, partition: int | None = None
) -> AuditLog:
    """The writer over an open store and key store, signing with the configured key (under
    the shard's origin for the store of ``partition``'s shard)."""
    return AuditLog(
        store=store,
        keys=keys,
        index_key=index_key(settings),
        signer=signer(settings, store.origin),
        archive=open_archive(settings, partition),
        policy=CheckpointPolicy(settings.checkpoint_every, settings.checkpoint_each_batch),
    )


def heads_publisher(
    settings: AuditSinkSettings, legacy: MemberHead | None = None
) -> HeadsPublisher:
    """The publisher of a sharded trail's heads notes (its store, its signer under the
    heads name, its archive and cadence); ``legacy`` is the frozen single log's head."""
    from audit_sink.trail import HeadsPublisher

    origin = settings.require_origin()
    return HeadsPublisher(
        origin=origin,
        store=open_heads_store(settings),
        signer=signer(settings, heads_origin(origin)),
        archive=CheckpointArchive(settings.heads_archive_dir()),
        legacy=legacy,
        every_s=settings.heads_every_s,
    )


def build_trail_writer(settings: AuditSinkSettings, keys: KeyStore) -> TrailWriter:
    """The writer of a sharded trail (``sharding=partition``): one log per partition,
    opened on first use, and the heads notes over them. A single log that holds entries is
    the legacy member: its unsigned tail is signed once, then it is never written again."""
    from audit_sink.trail import TrailWriter, latest_head

    legacy = None
    members = discover_members(settings)
    if members and members[0].partition is None:
        legacy_store = open_store(settings)
        try:
            legacy_log = build_log(settings, legacy_store, keys)
            legacy_log.checkpoint()  # the migration's last write to the single log
            head = latest_head(legacy_store, signer(settings).verifier())
            legacy = head, legacy_log.committed_positions()
        finally:
            legacy_store.close()
    publisher = heads_publisher(settings, None if legacy is None else legacy[0])

    def open_shard(partition: int) -> AuditLog:
        return build_log(settings, open_store(settings, partition=partition), keys, partition)

    return TrailWriter(open_shard, publisher, {} if legacy is None else legacy[1])
