from functools import lru_cache

from pydantic import Field

from services.identity.domain import IdentityRules, default_rules
from shared.streams import StreamSettings


class IdentitySettings(StreamSettings):
    identity_host: str = "127.0.0.1"
    identity_port: int = 8005
    identity_worker_metrics_port: int = 9106
    identity_publish_timeout_seconds: float = 10.0
    # Records per resolver batch: one graph read, one PostgreSQL transaction, one Kafka transaction.
    identity_batch_max: int = 2000
    identity_limits: dict[str, int] = Field(
        default_factory=dict,
        description='JSON: most identifiers of a kind one profile holds, e.g. {"email": 5}; over defaults.',
    )
    identity_blocked: dict[str, list[str]] = Field(
        default_factory=dict,
        description="JSON: values of a kind that never link, besides null, undefined, 0, -1, all zeros...",
    )

    def rules(self) -> IdentityRules:
        rules = default_rules(self.identity_extra_kinds)
        return IdentityRules(
            limits={**rules.limits, **self.identity_limits},
            default_limit=rules.default_limit,
            blocked={
                kind: frozenset(v.strip().lower() for v in values)
                for kind, values in self.identity_blocked.items()
            },
            priority=rules.priority,
        )


@lru_cache
def get_settings() -> IdentitySettings:
    return IdentitySettings()
