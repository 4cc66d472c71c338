"""Touchline's public APIs as the console uses them: every page is a client of them, with the signed-in
user's own key, so a page can never show what that key may not read (the APIs refuse it first)."""

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import httpx

from services.console.settings import ConsoleSettings


class ApiRefusal(Exception):
    """An API answered with an error the page shows as it is."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


Json = dict[str, Any]


class Touchline:
    def __init__(self, clients: Mapping[str, httpx.AsyncClient]) -> None:
        """`clients`: one per API by name, each with the API's base URL."""
        self.clients = clients

    async def _call(
        self,
        key: str,
        method: str,
        api: str,
        path: str,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
    ) -> Json | None:
        """The API's JSON answer; None for 404; ApiRefusal for any other error."""
        response = await self.clients[api].request(
            method,
            path,
            params={k: v for k, v in (params or {}).items() if v not in (None, "", [])},
            json=body,
            headers={"Authorization": f"Bearer {key}"},
        )
        if response.status_code == 404:
            return None
        if response.status_code >= 400:
            try:
                error = response.json()
                message = str(error.get("message") or error.get("detail"))
            except ValueError:
                message = response.text[:200]
            raise ApiRefusal(response.status_code, message)
        answer: Json = response.json()
        return answer

    async def ready(self) -> bool:
        """Every API the console calls answers its own readiness check."""
        try:
            answers = await asyncio.gather(*(client.get("/readyz") for client in self.clients.values()))
        except httpx.HTTPError:
            return False
        return all(answer.status_code == 200 for answer in answers)

    async def holder(self, key: str, kind: str, value: str) -> str | None:
        """The profile an identifier belongs to; a customer id known only by its touches counts too."""
        found = await self._call(key, "GET", "identity", f"/v1/identities/{kind}/{value}")
        if found is not None:
            return str(found["profile_id"])
        if kind == "customer_id" and await self.profile(key, value) is not None:
            return value
        return None

    async def profile(self, key: str, customer_id: str) -> Json | None:
        return await self._call(key, "GET", "timeline", f"/v1/customers/{customer_id}/profile")

    async def identities(self, key: str, customer_id: str) -> Json | None:
        return await self._call(key, "GET", "identity", f"/v1/customers/{customer_id}/identities")

    async def timeline(self, key: str, customer_id: str, **query: Any) -> Json:
        page = await self._call(key, "GET", "timeline", f"/v1/customers/{customer_id}/timeline", query)
        return page or {"events": [], "next_cursor": None}

    async def consent(self, key: str, customer_id: str) -> Json | None:
        return await self._call(key, "GET", "consent", f"/v1/customers/{customer_id}/consent")

    async def consent_history(self, key: str, customer_id: str) -> Json:
        page = await self._call(key, "GET", "consent", f"/v1/customers/{customer_id}/consent/history")
        return page or {"changes": [], "next_cursor": None}

    async def set_consent(self, key: str, customer_id: str, purpose: str, status: str) -> Json | None:
        path = f"/v1/customers/{customer_id}/consent/{purpose}"
        return await self._call(key, "PUT", "consent", path, body={"status": status})

    async def erase(self, key: str, customer_id: str) -> Json | None:
        return await self._call(key, "POST", "consent", f"/v1/customers/{customer_id}/erasure")

    async def segments(self, key: str) -> list[Json]:
        page = await self._call(key, "GET", "segments", "/v1/segments", {"limit": 200})
        return list((page or {}).get("segments", []))

    async def segment(self, key: str, segment_id: str) -> Json | None:
        return await self._call(key, "GET", "segments", f"/v1/segments/{segment_id}")

    async def stats(self, key: str, segment_id: str) -> Json | None:
        return await self._call(key, "GET", "segments", f"/v1/segments/{segment_id}/stats")

    async def changes(self, key: str, segment_id: str) -> Json:
        path = f"/v1/segments/{segment_id}/changes"
        page = await self._call(key, "GET", "segments", path, {"limit": 20})
        return page or {"changes": [], "next_cursor": None}

    async def members(self, key: str, segment_id: str, cursor: str | None = None) -> Json:
        path = f"/v1/segments/{segment_id}/members"
        page = await self._call(key, "GET", "segments", path, {"cursor": cursor, "limit": 50})
        return page or {"members": [], "next_cursor": None}


@asynccontextmanager
async def touchline(settings: ConsoleSettings) -> AsyncIterator[Touchline]:
    urls = {
        "timeline": settings.console_timeline_url,
        "segments": settings.console_segments_url,
        "consent": settings.console_consent_url,
        "identity": settings.console_identity_url,
    }
    async with AsyncExitStack() as stack:
        clients = {
            api: await stack.enter_async_context(httpx.AsyncClient(base_url=url, timeout=10.0))
            for api, url in urls.items()
        }
        yield Touchline(clients)
