"""The audit sink's one settings object, read from the environment.

Every variable has the prefix ``AUDIT_SINK_``; nested sections use ``__``, e.g.
``AUDIT_SINK_POSTGRES__DSN``. Secrets (the index key, DSNs with passwords) are ``SecretStr``:
they never show in a repr or a log line. See docs/audit-trail.md for every setting.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = [
    "AuditSinkSettings",
    "KafkaSettings",
    "PostgresSettings",
    "SettingsError",
    "SqliteSettings",
]


class SettingsError(ValueError):
    """A setting needed by the command is missing or invalid."""


class SqliteSettings(BaseModel):
    """The embedded default: the log and the key store in two separate files."""

    log_file: Path | None = Field(default=None, description="Log file; default data_dir/log.db.")
    keys_file: Path | None = Field(
        default=None, description="Key store file; default data_dir/keys.db (keep it apart)."
    )
    cache_mb: int = Field(
        default=64, ge=1, description="Page cache of the log's writer connection, in MiB."
    )


class PostgresSettings(BaseModel):
    """Production: the log and the key store in separate schemas, each with its own role."""

    dsn: SecretStr | None = Field(default=None, description="Log database DSN.")
    schema_name: str = Field(default="audit_log", description="Schema of the log tables.")
    role: str | None = Field(default=None, description="Role to SET for writing (the sink).")
    reader_role: str | None = Field(
        default=None, description="Role to SET for verify, proof, export and query."
    )
    keys_dsn: SecretStr | None = Field(default=None, description="Key store DSN; default dsn.")
    keys_schema: str = Field(default="audit_keys", description="Schema of the key table.")
    keys_role: str | None = Field(default=None, description="Role to SET for the key store.")


class KafkaSettings(BaseModel):
    """The ingest's Kafka consumer (``audit-sink ingest``); offsets live in the log's database."""

    bootstrap_servers: str = Field(
        default="127.0.0.1:19092", description="Kafka bootstrap servers, comma-separated."
    )
    group_id: str = Field(default="audit-sink", description="Consumer group of the sink.")
    group_instance_id: str | None = Field(
        default=None,
        description="Static group membership (KIP-345): a restarted sink with the same id "
        "gets its partitions back at once, without waiting for a session timeout.",
    )
    client_id: str = Field(default="audit-sink", description="Client id shown to the broker.")
    max_poll_records: int = Field(
        default=2000, ge=1, description="Largest batch: records stored in one transaction."
    )
    poll_timeout_ms: int = Field(
        default=500, ge=1, description="Longest wait for records (and for a stop signal)."
    )
    session_timeout_ms: int = Field(default=10000, ge=1, description="Group session timeout.")
    metadata_max_age_ms: int = Field(
        default=10000,
        ge=100,
        description="Refresh topic metadata at least this often (new partitions join soon).",
    )
    max_partition_fetch_bytes: int = Field(
        default=4 * 1024 * 1024, ge=1024, description="Largest fetch per partition."
    )
    isolation_level: Literal["read_committed", "read_uncommitted"] = Field(
        default="read_committed", description="Skip records of aborted transactions."
    )
    security_protocol: str = Field(default="PLAINTEXT", description="Kafka security protocol.")


class AuditSinkSettings(BaseSettings):
    """Everything the audit sink commands need, with defaults for a local run."""

    model_config = SettingsConfigDict(
        env_prefix="AUDIT_SINK_", env_nested_delimiter="__", extra="ignore"
    )

    origin: str | None = Field(
        default=None,
        description="Log origin, unique per deployment (e.g. audit.example.com/sharing-guard).",
    )
    backend: Literal["sqlite", "postgres"] = Field(default="sqlite", description="Log store.")
    sharding: Literal["single", "partition"] = Field(
        default="single",
        description="single: one log; partition: one log (shard) per partition of the audit "
        "topic, with signed heads notes over them (docs/audit-trail.md, 'Shards').",
    )
    data_dir: Path = Field(default=Path(".cache/audit-sink"), description="Default file home.")
    sqlite: SqliteSettings = SqliteSettings()
    postgres: PostgresSettings = PostgresSettings()
    signing_key_file: Path | None = Field(
        default=None, description="Ed25519 seed file (0600); default data_dir/signing.key."
    )
    vkey: str | None = Field(
        default=None, description="Pinned verifier key of the log (for verify and proof)."
    )
    index_key: SecretStr | None = Field(
        default=None, description="Base64 secret (>= 32 bytes) for keyed account tags."
    )
    api_token: SecretStr | None = Field(
        default=None,
        description="Bearer token of the HTTP API (audit-sink serve): 32+ random characters.",
    )
    checkpoint_dir: Path | None = Field(
        default=None, description="External checkpoint archive; default data_dir/checkpoints."
    )
    checkpoint_every: int = Field(default=1000, ge=1, description="Sign after this many.")
    checkpoint_each_batch: bool = Field(default=True, description="Sign after every batch.")
    audit_topic: str = Field(default="governance.audit", description="Topic the sink reads.")
    kafka: KafkaSettings = KafkaSettings()
    idle_checkpoint_ms: int = Field(
        default=5000,
        ge=1,
        description="Sign the unsigned entries after this long without records (ingest).",
    )
    heads_every_s: float = Field(
        default=5.0,
        ge=0,
        description="Sharded trail: publish a heads note at most this often, in seconds (0: "
        "after every shard checkpoint).",
    )
    prepare_in_helper: bool = Field(
        default=True,
        description="Ingest: prepare each batch in a helper process while the last is stored.",
    )
    stats_every_s: float = Field(
        default=60.0, gt=0, description="Seconds between two ingest statistics log lines."
    )
    metrics_host: str = Field(
        default="127.0.0.1", description="Bind address of the ingest's metrics listener."
    )
    metrics_port: int = Field(
        default=8089,
        ge=0,
        le=65535,
        description="Port of the ingest's metrics listener (/metrics, /healthz); 0 or empty: "
        "no listener.",
    )
    verify_chunk: int = Field(default=16384, ge=1, description="Rows per verification chunk.")
    verify_workers: int = Field(
        default=0,
        ge=0,
        description="Helper processes of a verification (0: one per CPU; 1: serial).",
    )

    @field_validator("metrics_port", mode="before")
    @classmethod
    def _empty_port_is_off(cls, value: object) -> object:
        """``AUDIT_SINK_METRICS_PORT=`` (empty) turns the listener off, as 0 does."""
        return 0 if value is None or (isinstance(value, str) and not value.strip()) else value

    def require_origin(self) -> str:
        """The origin (``SettingsError`` if unset: there is no default, because the origin
        names the log in every signed checkpoint and in the signing key)."""
        if not self.origin:
            raise SettingsError(
                "AUDIT_SINK_ORIGIN is not set: every command but pg-schema and "
                "keygen --index-key needs it. It names this audit log in every signed "
                "checkpoint, must be unique per deployment and stays the same for the log's "
                "whole life; e.g. export AUDIT_SINK_ORIGIN=audit.example.com/sharing-guard/prod"
            )
        return self.origin

    def log_file(self) -> Path:
        """The SQLite log file."""
        return self.sqlite.log_file or self.data_dir / "log.db"

    def shard_log_file(self, partition: int) -> Path:
        """The SQLite file of the shard of ``partition`` (beside the log file)."""
        log = self.log_file()
        return log.with_name(f"{log.stem}.shard-{partition}{log.suffix}")

    def heads_file(self) -> Path:
        """The SQLite file of the heads notes of a sharded trail (beside the log file)."""
        log = self.log_file()
        return log.with_name(f"{log.stem}.heads{log.suffix}")

    def shard_schema(self, partition: int) -> str:
        """The PostgreSQL schema of the shard of ``partition``."""
        return f"{self.postgres.schema_name}_shard_{partition}"

    def heads_schema(self) -> str:
        """The PostgreSQL schema of the heads notes of a sharded trail."""
        return f"{self.postgres.schema_name}_heads"

    def shard_archive_dir(self, partition: int) -> Path:
        """The checkpoint archive of the shard of ``partition``."""
        return self.archive_dir() / "shards" / str(partition)

    def heads_archive_dir(self) -> Path:
        """The archive of the heads notes (``<sequence number>.note``)."""
        return self.archive_dir() / "heads"

    def keys_file(self) -> Path:
        """The SQLite key store file."""
        return self.sqlite.keys_file or self.data_dir / "keys.db"

    def signing_key_path(self) -> Path:
        """The signing key file."""
        return self.signing_key_file or self.data_dir / "signing.key"

    def archive_dir(self) -> Path:
        """The external checkpoint archive directory."""
        return self.checkpoint_dir or self.data_dir / "checkpoints"

    def index_key_bytes(self) -> bytes:
        """The decoded index key (``SettingsError`` if unset or not base64 of 32+ bytes)."""
        if self.index_key is None:
            raise SettingsError("set AUDIT_SINK_INDEX_KEY (base64 of 32 random bytes)")
        try:
            raw = base64.b64decode(self.index_key.get_secret_value(), validate=True)
        except (binascii.Error, ValueError):
            raise SettingsError("AUDIT_SINK_INDEX_KEY is not base64") from None
        if len(raw) < 32:
            raise SettingsError("AUDIT_SINK_INDEX_KEY must decode to at least 32 bytes")
        return raw

    def postgres_dsn(self) -> str:
        """The log DSN (``SettingsError`` if unset)."""
        if self.postgres.dsn is None:
            raise SettingsError("set AUDIT_SINK_POSTGRES__DSN for the postgres backend")
        return self.postgres.dsn.get_secret_value()

    def postgres_keys_dsn(self) -> str:
        """The key store DSN (the log DSN when unset)."""
        if self.postgres.keys_dsn is not None:
            return self.postgres.keys_dsn.get_secret_value()
        return self.postgres_dsn()
