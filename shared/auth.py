"""API keys with scopes, read from TOUCHLINE_API_KEYS by every service.

A key maps either to its list of scopes, or to {"source": NAME, "scopes": [...]} to name the channel
system it belongs to. The source stamped on events always comes from here, never from the client.
"""

import hashlib
import hmac
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from shared.settings import ApiKeyGrant

ApiKeyConfig = Mapping[str, list[str] | ApiKeyGrant]
# Every scope a route can require: one per service and kind of access.
SCOPES = (
    "events:write",
    "timeline:read",
    "consent:read",
    "consent:write",
    "segments:read",
    "segments:admin",
    "identities:admin",
)


@dataclass(frozen=True)
class Principal:
    source: str
    scopes: frozenset[str]


def anonymous_source(key: str) -> str:
    """A stable, non-secret name for a key configured without one: a short digest, never the key."""
    return "key-" + hashlib.sha256(key.encode()).hexdigest()[:10]


def principals(config: ApiKeyConfig) -> list[tuple[bytes, Principal]]:
    table = []
    for key, grant in config.items():
        if isinstance(grant, ApiKeyGrant):
            principal = Principal(grant.source, frozenset(grant.scopes))
        else:
            principal = Principal(anonymous_source(key), frozenset(grant))
        table.append((key.encode(), principal))
    return table


def authenticate(presented: str, table: list[tuple[bytes, Principal]]) -> Principal | None:
    """Compares against every key, in constant time each, so timing reveals neither key nor position."""
    found = None
    candidate = presented.encode()
    for key, principal in table:
        if hmac.compare_digest(candidate, key):
            found = principal
    return found


_bearer = HTTPBearer(auto_error=False, description="An API key from TOUCHLINE_API_KEYS.")


def require_scope(scope: str) -> Callable[..., Awaitable[Principal]]:
    """A FastAPI dependency: 403 when the request's key lacks `scope`.

    The key itself was checked before the body was read (shared/front_door.py); the bearer scheme is
    declared here so the OpenAPI schema shows how to authenticate."""

    async def dependency(
        request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
    ) -> Principal:
        principal: Principal = request.state.principal
        if scope not in principal.scopes:
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"this API key lacks the scope '{scope}'")
        return principal

    return dependency
