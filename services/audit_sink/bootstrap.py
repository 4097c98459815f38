"""The audit sink's composition root: settings in, stores, keys and the writer out.

Nothing else reads settings or chooses adapters; commands (and a future server) ask here.
"""

from __future__ import annotations

from audit_sink.archive import CheckpointArchive
from audit_sink.checkpoint import KeyFormatError, NoteSigner, NoteVerifier
from audit_sink.keystore import KeyStore
from audit_sink.sealing import IndexKey
from audit_sink.settings import AuditSinkSettings, SettingsError
from audit_sink.signing import load_signing_key
from audit_sink.store import LogStore
from audit_sink.writer import AuditLog, CheckpointPolicy

__all__ = [
    "build_log",
    "index_key",
    "open_archive",
    "open_keystore",
    "open_store",
    "pinned_verifier",
    "signer",
]


def open_store(settings: AuditSinkSettings, *, write: bool = True) -> LogStore:
    """The log store of the configured backend; ``write=False`` for reading only (the
    SQLite file opened read-only, the PostgreSQL reader role if one is set)."""
    origin = settings.require_origin()
    if settings.backend == "postgres":
        from audit_sink.store_postgres import PostgresLogStore

        pg = settings.postgres
        role = pg.role if write else pg.reader_role or pg.role
        return PostgresLogStore(settings.postgres_dsn(), pg.schema_name, origin, role)
    from audit_sink.store_sqlite import SqliteLogStore

    return SqliteLogStore(
        settings.log_file(), origin, read_only=not write, cache_mb=settings.sqlite.cache_mb
    )


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


def open_archive(settings: AuditSinkSettings) -> CheckpointArchive:
    """The external checkpoint archive."""
    return CheckpointArchive(settings.archive_dir())


def signer(settings: AuditSinkSettings) -> NoteSigner:
    """The checkpoint signer (the key file, named by the origin)."""
    return load_signing_key(settings.signing_key_path(), settings.require_origin())


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


def build_log(settings: AuditSinkSettings, store: LogStore, keys: KeyStore) -> AuditLog:
    """The writer over an open store and key store, signing with the configured key."""
    return AuditLog(
        store=store,
        keys=keys,
        index_key=index_key(settings),
        signer=signer(settings),
        archive=open_archive(settings),
        policy=CheckpointPolicy(settings.checkpoint_every, settings.checkpoint_each_batch),
    )
