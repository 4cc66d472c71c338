from functools import lru_cache

from pydantic import Field

from shared.events import ConsentStatus, Purpose
from shared.purposes import DEFAULT_CONSENT
from shared.streams import StreamSettings


class ConsentSettings(StreamSettings):
    consent_host: str = "127.0.0.1"
    consent_port: int = 8004
    consent_worker_metrics_port: int = 9104
    consent_publish_timeout_seconds: float = 10.0
    consent_defaults: dict[Purpose, ConsentStatus] = Field(
        default_factory=dict,
        description='JSON, e.g. {"marketing": "granted"}; unnamed purposes keep the built-in default.',
    )

    def defaults(self) -> dict[Purpose, ConsentStatus]:
        return {**DEFAULT_CONSENT, **self.consent_defaults}


@lru_cache
def get_settings() -> ConsentSettings:
    return ConsentSettings()
