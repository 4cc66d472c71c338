"""Configuration from the environment: one pydantic-settings class per service, all built on this base.

Every variable starts with `TOUCHLINE_`; the defaults are the ones `make run` uses.
"""

from typing import Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.events import ConsentStatus, Identifier, Purpose
from shared.identities import BUILT_IN_KINDS
from shared.purposes import DEFAULT_CONSENT
from shared.topics import TopicSpec, topic_name


class ApiKeyGrant(BaseModel):
    """The long form of an API key's entry, naming the channel system it belongs to."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: Identifier
    scopes: list[str]


class TouchlineSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TOUCHLINE_", extra="ignore", frozen=True)

    kafka_bootstrap: str = "127.0.0.1:19092"
    # One broker locally; 3 and 2 on a cluster, so acks=all means a write survives losing a broker.
    kafka_replication_factor: int = Field(default=1, ge=1, description="Replicas of every topic created.")
    kafka_min_insync_replicas: int = Field(
        default=1, ge=1, description="Replicas that must have a write before acks=all acknowledges it."
    )
    topic_prefix: str = Field(default="", description="Prepended to every topic name; tests set their own.")
    pg_dsn: SecretStr = SecretStr("postgresql://postgres@127.0.0.1:55432/touchline")
    api_keys: dict[str, list[str] | ApiKeyGrant] = Field(
        default_factory=dict,
        description='JSON: {"key": ["scope", ...]} or {"key": {"source": "web-shop", "scopes": [...]}}.',
    )
    log_level: str = "INFO"
    identity_extra_kinds: list[str] = Field(
        default=["loyalty_card"],
        description="Identifier kinds a touch may name besides anonymous_id, email and phone.",
    )
    # The HTTP front door (shared/front_door.py and uvicorn): a route may allow a larger body (ingest).
    http_max_body_bytes: int = Field(default=64 * 1024, ge=1024, description="Largest request body accepted.")
    http_max_concurrency: int = Field(
        default=500,
        ge=1,
        description="Connections and requests in progress; beyond them uvicorn answers 503.",
    )
    http_max_header_bytes: int = Field(
        default=16 * 1024, ge=1024, description="Largest request head accepted."
    )
    consent_defaults: dict[Purpose, ConsentStatus] = Field(
        default_factory=dict,
        description='JSON, e.g. {"marketing": "granted"}; a purpose not named keeps the built-in default.',
    )

    @model_validator(mode="after")
    def _replicas_can_be_in_sync(self) -> Self:
        if self.kafka_min_insync_replicas > self.kafka_replication_factor:
            raise ValueError(
                f"TOUCHLINE_KAFKA_MIN_INSYNC_REPLICAS ({self.kafka_min_insync_replicas}) exceeds"
                f" TOUCHLINE_KAFKA_REPLICATION_FACTOR ({self.kafka_replication_factor}):"
                " no acks=all write could ever succeed"
            )
        return self

    def default_consent(self) -> dict[Purpose, ConsentStatus]:
        """Consent of customers who never said anything, per purpose."""
        return {**DEFAULT_CONSENT, **self.consent_defaults}

    def identity_kinds(self) -> frozenset[str]:
        return frozenset(BUILT_IN_KINDS) | frozenset(self.identity_extra_kinds)

    def topic(self, spec: TopicSpec) -> str:
        return topic_name(spec, self.topic_prefix)
