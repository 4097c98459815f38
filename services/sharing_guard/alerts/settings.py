"""The alerts process's one settings object, read from the environment.

Every variable has the prefix ``SHARING_GUARD_ALERTS_`` (nested sections use ``__``, e.g.
``SHARING_GUARD_ALERTS_TOPICS__BLOCKED``); the broker address is also taken from the
common ``KAFKA_BOOTSTRAP_SERVERS``. The webhook URL and secret are secrets: never logged.
"""

from typing import Literal

from pydantic import AliasChoices, AnyHttpUrl, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from sharing_guard.settings import Topics


class AlertsSettings(BaseSettings):
    """Everything ``sharing-guard alerts`` needs; only the webhook URL has no default."""

    model_config = SettingsConfigDict(
        env_prefix="SHARING_GUARD_ALERTS_", env_nested_delimiter="__", extra="ignore"
    )

    webhook_url: SecretStr = Field(
        description="Where alerts are POSTed (http or https). Secret: it may embed a token."
    )
    webhook_secret: SecretStr | None = Field(
        default=None,
        description="Shared secret; when set, each post carries an HMAC-SHA256 signature.",
    )
    bootstrap_servers: str = Field(
        default="127.0.0.1:19092",
        validation_alias=AliasChoices(
            "SHARING_GUARD_ALERTS_BOOTSTRAP_SERVERS", "KAFKA_BOOTSTRAP_SERVERS"
        ),
        description="Kafka bootstrap servers, comma-separated host:port.",
    )
    group_id: str = Field(default="sharing-guard-alerts", description="Kafka consumer group.")
    topics: Topics = Topics()
    auto_offset_reset: Literal["earliest", "latest"] = Field(
        default="latest",
        description="Where a new consumer group starts (latest: no storm of old alerts).",
    )
    queue_max: int = Field(
        default=1000, ge=1, description="Alerts waiting for the webhook; beyond: drop oldest."
    )
    timeout_s: float = Field(default=5.0, gt=0, description="Timeout of one webhook request.")
    backoff_base_s: float = Field(default=0.5, gt=0, description="First retry delay.")
    backoff_max_s: float = Field(default=60.0, gt=0, description="Longest retry delay.")
    backoff_jitter: float = Field(
        default=0.5, ge=0, le=1, description="Fraction of a delay randomly taken off."
    )
    max_attempts: int = Field(
        default=0, ge=0, description="Attempts per alert; 0: until delivered or dropped."
    )
    orders_remembered: int = Field(
        default=100_000, ge=1, description="Orders tracked for exhaustion alerts."
    )
    web_host: str = Field(default="127.0.0.1", description="Health and metrics bind address.")
    web_port: int = Field(default=8091, ge=1, le=65535, description="Health and metrics port.")
    log_level: str = Field(default="INFO", description="Log level.")

    @field_validator("webhook_url")
    @classmethod
    def _http_url(cls, value: SecretStr) -> SecretStr:
        try:
            parsed = AnyHttpUrl(value.get_secret_value())
        except ValidationError:
            raise ValueError("must be an http:// or https:// URL") from None
        if parsed.scheme not in ("http", "https"):
            raise ValueError("must be an http:// or https:// URL")
        return value
