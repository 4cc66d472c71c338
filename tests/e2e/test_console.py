"""The Customer 360 console in real Chromium (Debian's, driven by Playwright), on the whole stack: every
API and every pipeline worker as its own process (`python -m services.<name> ...`, as `make run` starts
them), the console pointed at the APIs over HTTP."""

import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from shared.demo import demo_customer
from shared.settings import TouchlineSettings
from tests.bench.stack import Stack, start_stack
from tests.helpers import ROOT

CHROMIUM = "/usr/bin/chromium"
# The flags a closed network needs: no background calls home, no sandbox as root.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WRITER = {"Authorization": "Bearer test-writer"}
MARKETER = {"Authorization": "Bearer test-marketer"}
DPO = {"Authorization": "Bearer test-dpo"}
# Screenshots for the README: `TOUCHLINE_CONSOLE_SCREENSHOTS=docs/screenshots make test` refreshes them.
SHOTS = os.environ.get("TOUCHLINE_CONSOLE_SCREENSHOTS")

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="make test installs Debian's chromium")


@pytest.fixture(scope="module")
async def stack(
    test_env: dict[str, str], logs: Path, kafka: TouchlineSettings, database: str
) -> AsyncIterator[Stack]:
    """Every process of deploy/processes.txt, as `make run` starts them (the console among them), on the
    tests' topics and database and ports of their own."""
    (logs / "console-stack").mkdir(exist_ok=True)
    started = await start_stack(test_env, logs / "console-stack")
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


def touch(unique: str, n: int, channel: str, type_: str = "page.viewed", **extra: Any) -> dict[str, Any]:
    return {
        "event_id": f"{unique}-{n}",
        "customer_id": f"c-{unique}",
        "type": type_,
        "channel": channel,
        "occurred_at": datetime.now(UTC).isoformat(),  # newer than every demo touch
    } | extra


def demo(customer: str) -> list[dict[str, Any]]:
    """A demo customer as `make run` loads them (shared/demo.py), with two pages of timeline at least and
    email among their channels."""
    for seed in range(100):
        journey = [t.model_dump(mode="json") for t in demo_customer(customer, datetime.now(UTC), seed=seed)]
        if len(journey) > 25 and any(t["channel"] == "email" for t in journey):
            return journey
    raise AssertionError("no demo journey of two pages with emails")


async def sign_in(page: Page, console: str, key: str) -> None:
    await page.goto(console + "/signin")
    await page.fill("#key", key)
    await page.click("button[type=submit]")
    await expect(page.locator("h1")).to_have_text("Find a customer")


async def shot(page: Page, name: str) -> None:
    if SHOTS:
        await page.screenshot(path=str(ROOT / SHOTS / f"{name}.png"), full_page=True)


async def test_front_office_finds_a_customer_scrolls_filters_and_sees_live_changes(
    stack: Stack, browser: Browser, unique: str
) -> None:
    customer, segment = f"c-{unique}", f"console-{unique}"
    seeded = demo(customer)
    email = seeded[0]["identities"]["email"]
    emails = sum(1 for t in seeded if t["channel"] == "email")
    async with httpx.AsyncClient() as api:
        for person in (customer, f"b-{unique}"):  # marketing is opt-in, and segments need it
            path = f"/v1/customers/{person}/consent/marketing"
            response = await api.put(stack.url("consent") + path, json={"status": "granted"}, headers=DPO)
            assert response.status_code == 202, response.text
        rule = {"count": {"type": "purchase", "properties": {"campaign": unique}, "within": "7d"}, "gte": 1}
        defined = await api.post(
            stack.url("segments") + "/v1/segments",
            json={"id": segment, "name": f"Bought in campaign {unique}", "rule": rule},
            headers=MARKETER,
        )
        assert defined.status_code == 201, defined.text
        posted = await api.post(stack.url("ingest") + "/v1/events", json=seeded, headers=WRITER)
        assert posted.status_code == 202, posted.text

        page = await browser.new_page(viewport={"width": 1200, "height": 900})
        console = stack.url("console")
        await sign_in(page, console, "test-front-office")
        cookie = next(c for c in await page.context.cookies() if c["name"] == "touchline_console")
        assert (cookie["httpOnly"], cookie["sameSite"]) == (True, "Strict")

        # Find by email: the identity the first touch named.
        await page.fill("#find-q", email)
        await page.click("form.stack button[type=submit]")
        await expect(page.locator("h1#profile-title")).to_have_text(customer, timeout=30_000)
        await expect(page.locator("#touch-count")).to_have_text(str(len(seeded)), timeout=30_000)
        touches = page.locator("#touches li.touch")
        await expect(touches).to_have_count(25)  # the first page
        await page.locator("#touches li.more").scroll_into_view_if_needed()
        await expect(touches).to_have_count(min(50, len(seeded)))  # the second, by the API's cursor
        await shot(page, "customer")

        # A touch posted now appears without a reload.
        fresh = touch(unique, 59, "store", "purchase", properties={"campaign": unique, "amount": 12})
        assert (
            await api.post(stack.url("ingest") + "/v1/events", json=[fresh], headers=WRITER)
        ).status_code == 202
        await expect(page.locator(f'#touches li.touch[data-event="{unique}-59"]')).to_be_visible(
            timeout=30_000
        )

        # Filter by channel.
        await page.check('input[name=channels][value="email"]')
        await page.click("form.filters button[type=submit]")
        await expect(touches).to_have_count(min(25, emails))
        assert set(await page.locator("#touches li.touch .chip").all_inner_texts()) == {"email"}

        # The segment: its rule in words, and the customer arriving in it live.
        await page.goto(f"{console}/segments/{segment}")
        await expect(page.locator("p.rule")).to_contain_text("purchase touches with campaign")
        await expect(page.locator(f'#changes li[data-member="{customer}"]')).to_be_visible(timeout=30_000)
        second = touch(
            unique, 58, "store", "purchase", customer_id=f"b-{unique}", properties={"campaign": unique}
        )
        assert (
            await api.post(stack.url("ingest") + "/v1/events", json=[second], headers=WRITER)
        ).status_code == 202
        entered = page.locator(f'#changes li[data-member="b-{unique}"][data-transition="entered"]')
        await expect(entered).to_be_visible(timeout=30_000)  # the live feed, without a reload
        await expect(page.locator("#member-count")).to_have_text("2")
        await page.reload()
        await expect(page.locator("#members li[data-member]")).to_have_count(2)
        await shot(page, "segment")

        # A consent denial, confirmed, empties the timeline once the projections applied it.
        await page.goto(f"{console}/customers/{customer}/consent")
        await page.select_option("#purpose", "profiling")
        await page.select_option("#status", "denied")
        await page.check("input[name=confirm][value=yes]")
        await page.click("#consent-form button[type=submit]")
        await expect(page.locator("#applied")).to_contain_text("Recorded: profiling denied")
        # The page follows the change until the timeline has deleted the customer's touches.
        await expect(page.locator("#applied")).to_contain_text("Applied: profiling denied", timeout=60_000)
        await expect(page.locator('td[data-purpose="profiling"]')).to_have_text("denied")
        await page.goto(f"{console}/customers/{customer}")
        await expect(page.locator("#withheld")).to_be_visible()  # the page says why it is empty
        assert await page.locator("#touches li.touch").count() == 0


async def test_a_key_without_consent_write_sees_no_consent_form(stack: Stack, browser: Browser) -> None:
    page = await browser.new_page()
    await sign_in(page, stack.url("console"), "test-reader")
    await page.goto(stack.url("console") + "/customers/anyone/consent")
    await expect(page.locator("h1")).to_contain_text("Consent of")
    assert await page.locator("#consent-form").count() == 0
    assert await page.locator("#erasure-form").count() == 0


async def test_a_wrong_key_and_an_unknown_customer_get_clear_answers(stack: Stack, browser: Browser) -> None:
    page = await browser.new_page()
    await page.goto(stack.url("console") + "/")
    await expect(page.locator("h1")).to_have_text("Sign in")  # no session: sent to sign in
    await page.fill("#key", "not-a-key")
    await page.click("button[type=submit]")
    await expect(page.locator(".error")).to_have_text("That API key is not known.")
    await sign_in(page, stack.url("console"), "test-reader")
    await page.goto(stack.url("console") + "/find?q=nobody@example.com")
    await expect(page.locator("#not-found")).to_contain_text("No customer found for email")
