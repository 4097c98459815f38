"""The order service's one settings object, read from the environment.

Every variable has the prefix ``SHARING_GUARD_ORDERS_`` (e.g.
``SHARING_GUARD_ORDERS_BOOTSTRAP_SERVERS``, ``SHARING_GUARD_ORDERS_TOKENS_FILE``); the
broker address is also taken from the common ``KAFKA_BOOTSTRAP_SERVERS``.
"""

from pathlib import Path
from typing import Self

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from sharing_guard.orders.auth import TokenEntry


class OrdersSettings(BaseSettings):
    """Everything the order service needs, with defaults for a local run."""

    model_config = SettingsConfigDict(env_prefix="SHARING_GUARD_ORDERS_", extra="ignore")

    bootstrap_servers: str = Field(
        default="127.0.0.1:19092",
        validation_alias=AliasChoices(
            "SHARING_GUARD_ORDERS_BOOTSTRAP_SERVERS", "KAFKA_BOOTSTRAP_SERVERS"
        ),
        description="Kafka bootstrap servers, comma-separated host:port.",
    )
    orders_topic: str = Field(default="legal.orders", description="Where order events go.")
    decisions_topic: str = Field(
        default="sharing.decisions", description="The guard's decisions (disclosures)."
    )
    host: str = Field(default="127.0.0.1", description="HTTP bind address.")
    port: int = Field(default=8090, ge=1, le=65535, description="HTTP port.")
    state_file: Path = Field(
        default=Path(".cache/orders/orders.sqlite3"),
        description="SQLite file of the applied order events, disclosures and offsets.",
    )
    tokens_file: Path | None = Field(
        default=None, description="JSON list of token entries (hashes only)."
    )
    tokens: list[TokenEntry] = Field(
        default_factory=list,
        description="Token entries as a JSON list (added to those of tokens_file).",
    )
    apply_timeout_s: float = Field(
        default=15.0,
        gt=0,
        description="Longest wait for a published event to come back from the topic.",
    )
    kafka_timeout_s: float = Field(default=15.0, gt=0, description="Broker ack timeout.")
    log_level: str = Field(default="INFO", description="Log level of the service.")
    max_body_bytes: int = Field(
        default=524_288,
        ge=1024,
        description="Largest request body taken (413 beyond, refused before it is read); "
        "must stay below max_record_bytes.",
    )
    max_record_bytes: int = Field(
        default=1_048_576,
        ge=2048,
        description="The broker's record limit (message.max.bytes, and the producer's "
        "max.request.size): an order event larger than this is refused (413) before sending.",
    )

    @model_validator(mode="after")
    def _body_fits_a_record(self) -> Self:
        if self.max_body_bytes >= self.max_record_bytes:
            raise ValueError(
                "SHARING_GUARD_ORDERS_MAX_BODY_BYTES must be below "
                "SHARING_GUARD_ORDERS_MAX_RECORD_BYTES: an accepted order must fit a record"
            )
        return self
