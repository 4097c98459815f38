"""The guard's one settings object, read from the environment (12-factor, Kubernetes-ready).

Every variable has the prefix ``SHARING_GUARD_``; nested sections use ``__``, e.g.
``SHARING_GUARD_TOPICS__TRANSFERS``. The broker address is also taken from the common
``KAFKA_BOOTSTRAP_SERVERS`` when the prefixed one is not set.
"""

from pathlib import Path

from pydantic import AliasChoices, BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Topics(BaseModel):
    """Topic names (the contract's defaults)."""

    transfers: str = "sharing.transfers.requested"
    consents: str = "governance.consents"
    recipients: str = "governance.recipients"
    rights: str = "governance.subject-rights"
    orders: str = "legal.orders"
    decisions: str = "sharing.decisions"
    approved: str = "sharing.transfers.approved"
    blocked: str = "sharing.transfers.blocked"
    dlq: str = "sharing.transfers.dlq"
    audit: str = "governance.audit"
    order_requests: str = "sharing.order-requests"
    policy: str = "governance.policy"
    shadow: str = "sharing.decisions.shadow"


class GuardSettings(BaseSettings):
    """Everything the sharing guard worker needs, with defaults for a local run."""

    model_config = SettingsConfigDict(
        env_prefix="SHARING_GUARD_", env_nested_delimiter="__", extra="ignore"
    )

    bootstrap_servers: str = Field(
        default="127.0.0.1:19092",
        validation_alias=AliasChoices("SHARING_GUARD_BOOTSTRAP_SERVERS", "KAFKA_BOOTSTRAP_SERVERS"),
        description="Kafka bootstrap servers, comma-separated host:port.",
    )
    app_id: str = Field(default="sharing-guard", description="Consumer group and changelog prefix.")
    topics: Topics = Topics()
    account_partitions: int = Field(
        default=6, ge=1, description="Partitions of the account-keyed topics (co-partitioned)."
    )
    policy_file: Path | None = Field(
        default=None,
        description="Policy file enforced until a version is promoted (governance.policy); "
        "default bundled.",
    )
    shadow_policy_file: Path | None = Field(
        default=None,
        description="A candidate policy decided beside the enforced one on live traffic; its "
        "decisions go to the shadow topic and the metrics only (shadow mode). Default: none.",
    )
    data_dir: Path = Field(
        default=Path(".cache/guard"),
        description="Local state (kept between restarts; rebuilt from the changelogs if lost).",
    )
    batch_max: int = Field(
        default=500, ge=1, description="Most records processed per batch (transfers, governance)."
    )
    batch_within_s: float = Field(default=0.005, gt=0, description="Longest wait to fill a batch.")
    catch_up_timeout_s: float = Field(
        default=5.0, gt=0, description="Longest wait for state; then GUARD_ERROR."
    )
    session_timeout_s: float = Field(
        default=10.0, ge=3, description="A worker silent this long leaves the group."
    )
    idempotency_window_s: float | None = Field(
        default=None,
        gt=0,
        description="How long decisions and event ids are kept for redeliveries; default: "
        "the longest retention.ms + segment.ms of the transfers and order-requests topics; "
        "shorter than their retention.ms: refused at start.",
    )
    check_retention: bool = Field(
        default=True,
        description="Read the inputs' retention.ms from the broker at start and check the "
        "idempotency window against it. Off only for a broker that cannot describe topic "
        "configs (the demo's embedded Tansu); the window must then be set explicitly.",
    )
    liveness_timeout_s: float = Field(
        default=60.0, gt=0, description="/livez fails after this long with lag and no progress."
    )
    store_max_age_s: float = Field(
        default=86_400.0,
        gt=0,
        description="A local store older than this is rebuilt (changelog delete.retention.ms).",
    )
    changelog_replication: int = Field(
        default=1, ge=1, description="Replication factor of the changelog topics it creates."
    )
    max_record_bytes: int = Field(default=1024 * 1024, ge=1024, description="Larger: DLQ.")
    web_host: str = Field(default="127.0.0.1", description="Health and metrics bind address.")
    web_port: int = Field(default=6066, ge=1, le=65535, description="Health and metrics port.")
    log_level: str = Field(default="WARNING", description="Worker log level.")
    trace_file: Path | None = Field(
        default=None,
        description="Also append finished spans as JSON lines here (development and tests; "
        "OTLP export is set by the standard OTEL_EXPORTER_OTLP_ENDPOINT).",
    )
