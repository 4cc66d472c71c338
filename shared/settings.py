"""Configuration from the environment: one pydantic-settings class per service, all built on this base.

Every variable starts with `TOUCHLINE_`; the defaults are the ones `make run` uses.
"""

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.events import ConsentStatus, Identifier, Purpose
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
    topic_prefix: str = Field(default="", description="Prepended to every topic name; tests set their own.")
    pg_dsn: SecretStr = SecretStr("postgresql://postgres@127.0.0.1:55432/touchline")
    api_keys: dict[str, list[str] | ApiKeyGrant] = Field(
        default_factory=dict,
        description='JSON: {"key": ["scope", ...]} or {"key": {"source": "web-shop", "scopes": [...]}}.',
    )
    log_level: str = "INFO"
    consent_defaults: dict[Purpose, ConsentStatus] = Field(
        default_factory=dict,
        description='JSON, e.g. {"marketing": "granted"}; a purpose not named keeps the built-in default.',
    )

    def default_consent(self) -> dict[Purpose, ConsentStatus]:
        """Consent of customers who never said anything, per purpose."""
        return {**DEFAULT_CONSENT, **self.consent_defaults}

    def topic(self, spec: TopicSpec) -> str:
        return topic_name(spec, self.topic_prefix)
