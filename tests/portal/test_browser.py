"""The cross-device page in a real browser: Debian's Chromium shows the QR and number, the phone approves, and the
page takes the citizen back to the portal on its own, under the page's strict CSP."""

from __future__ import annotations

import asyncio
import base64
import io
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
import zxingcpp
from PIL import Image
from playwright.async_api import Browser, ConsoleMessage, Page

from tests.browser import browser, needs_chromium, screenshot, serious_violations
from tests.live import LiveEcard, LiveWorld
from tests.portal.oidc import PortalClient, portal_site

pytestmark = needs_chromium
__all__ = ["browser", "portal_site"]  # the fixtures, used by name


@pytest.fixture
async def live(service_urls: tuple[str, str], tmp_path: Path) -> AsyncIterator[LiveEcard]:
    server = await LiveEcard.create("cq", service_urls, tmp_path / "live", name="portal_browser")
    await asyncio.to_thread(server.start)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.stop)


async def qr_link(page: Page) -> str:
    """What the page's QR says, read back from the image the browser shows."""
    source = await page.get_attribute("#qr", "src")
    assert source is not None
    assert source.startswith("data:image/png;base64,")
    image = Image.open(io.BytesIO(base64.b64decode(source.split(",", 1)[1])))
    found = zxingcpp.read_barcode(image)
    assert found is not None
    return str(found.text)


async def test_the_qr_page_follows_the_phones_approval_back_to_the_portal(
    live: LiveEcard, browser: Browser, portal_site: tuple[str, list[dict[str, str]]]
) -> None:
    callback, seen = portal_site
    async with httpx.AsyncClient(base_url=live.base, timeout=30) as http:
        world: LiveWorld = live.world(http)
        actor = await world.portal(["name", "id_number"], [callback], ["wl-010"])
        device = await world.device("赵六")
        portal = PortalClient(live.base, actor, callback)
        try:
            assert (await portal.discover())["issuer"] == live.base
            pushed = await portal.push(prompt="login", display="page")

            page = await browser.new_page()
            console: list[str] = []

            def remember(message: ConsoleMessage) -> None:
                console.append(message.text)

            page.on("console", remember)
            answer = await page.goto(portal.authorize_url(pushed))
            assert answer is not None
            assert answer.ok
            assert "script-src 'nonce-" in (await answer.all_headers())["content-security-policy"]
            assert await serious_violations(page) == []
            await screenshot(page, "portal-waiting-page")
            number = int(await page.inner_text("#number"))
            link = await qr_link(page)
            assert link.startswith("ecard://login?login_id=")
            login_id = dict(parse_qsl(urlsplit(link).query))["login_id"]

            shown = await world.signed(device, "GET", f"/v1/logins/{login_id}")
            assert shown.json()["number_required"] is True
            approved = await world.signed(device, "POST", f"/v1/logins/{login_id}/approve", {"number": number})
            assert approved.status_code == 200, approved.text

            await page.wait_for_url(f"{callback}?*", timeout=15_000)
            assert await page.inner_text("p") == "signed in"
            [received] = seen
            assert received["iss"] == live.base
            assert received["state"] == pushed.state
            token = await portal.redeem(received["code"], pushed)
            claims = await portal.id_token_claims(token["id_token"], pushed)
            assert claims["name"] == "赵六"
            assert not [line for line in console if "Content Security Policy" in line], console
        finally:
            await portal.aclose()


async def test_a_wrong_number_sends_the_page_back_with_access_denied(
    live: LiveEcard, browser: Browser, portal_site: tuple[str, list[dict[str, str]]]
) -> None:
    callback, seen = portal_site
    async with httpx.AsyncClient(base_url=live.base, timeout=30) as http:
        world: LiveWorld = live.world(http)
        actor = await world.portal(["region"], [callback], ["wl-030"], name="武隆区图书馆")
        device = await world.device()
        portal = PortalClient(live.base, actor, callback)
        try:
            await portal.discover()
            pushed = await portal.push(prompt="login", display="page")
            page = await browser.new_page()
            await page.goto(portal.authorize_url(pushed))
            assert await serious_violations(page) == []
            await screenshot(page, "portal-waiting-page")
            number = int(await page.inner_text("#number"))
            login_id = dict(parse_qsl(urlsplit(await qr_link(page)).query))["login_id"]
            wrong = 10 + (number - 10 + 1) % 90
            refused = await world.signed(device, "POST", f"/v1/logins/{login_id}/approve", {"number": wrong})
            assert refused.status_code == 403
            await page.wait_for_url(f"{callback}?*", timeout=15_000)
            [received] = seen
            assert received["error"] == "access_denied"
            assert received["state"] == pushed.state
            assert "code" not in received
        finally:
            await portal.aclose()
