"""An operator at the console in a browser: logs in with password and TOTP, and every page it sees is checked
(axe, the CSP header, no CSP violation, a screenshot) and every URL it requests remembered."""

from __future__ import annotations

import re
import secrets

import pyotp
from playwright.async_api import Browser, BrowserContext, ConsoleMessage, Page, Request, Response

from tests.browser import screenshot, serious_violations
from tests.live import LiveWorld


class Desk:
    def __init__(self, world: LiveWorld, context: BrowserContext, page: Page) -> None:
        self.world = world
        self.context = context
        self.page = page
        self.urls: list[str] = []
        self.pages: list[Response] = []
        self.console: list[str] = []
        page.on("request", self._requested)
        page.on("response", self._answered)
        page.on("console", self._logged)

    def _requested(self, request: Request) -> None:
        self.urls.append(request.url)

    def _answered(self, response: Response) -> None:
        if response.request.resource_type == "document" and response.status < 300:
            self.pages.append(response)

    def _logged(self, message: ConsoleMessage) -> None:
        self.console.append(message.text)

    @classmethod
    async def open(cls, world: LiveWorld, browser: Browser) -> Desk:
        context = await browser.new_context(base_url=world.live.base)
        return cls(world, context, await context.new_page())

    async def log_in(self, username: str | None = None) -> str:
        """A new operator, logged in through the form; its username."""
        username = username or f"op_{secrets.token_hex(4)}"
        password, uri = await self.world.new_operator(username)
        await self.page.goto("/console/login")
        await self.page.fill("#username", username)
        await self.page.fill("#password", password)
        totp = pyotp.parse_uri(uri)
        assert isinstance(totp, pyotp.TOTP)
        await self.page.fill("#totp", totp.now())
        await self.page.click("button[type=submit]")
        await self.page.wait_for_url("**/console/")
        return username

    async def check(self, name: str) -> None:
        """axe finds nothing serious; the page is kept as a screenshot."""
        assert await serious_violations(self.page) == []
        await screenshot(self.page, f"console-{name}")

    async def headers_checked(self) -> None:
        """Every page shown carried the strict CSP, and the browser reported no violation of it."""
        for response in self.pages:
            policy = (await response.all_headers()).get("content-security-policy", "")
            assert "frame-ancestors 'none'" in policy, response.url
            assert re.search(r"script-src 'nonce-[^']+'", policy), response.url
        assert not [line for line in self.console if "Content Security Policy" in line], self.console

    def never_in_urls(self, secret: str) -> None:
        assert not [url for url in self.urls if secret in url], self.urls

    async def close(self) -> None:
        await self.headers_checked()
        await self.context.close()

    async def cookie(self) -> str:
        [cookie] = [c for c in await self.context.cookies() if c["name"] == "ecard_console"]
        return cookie["value"]
