"""The API reference page at /schema works without the internet: every script and style it loads is served here."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Request, Route, async_playwright

from tests.live import LiveEcard
from tests.support import World

CHROMIUM = Path("/usr/bin/chromium")


class _Loads(HTMLParser):
    """Every URL a page makes the browser fetch: scripts, stylesheets, icons, images, frames."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        given = dict(attrs)
        if tag in {"script", "img", "iframe"} and given.get("src"):
            self.urls.append(str(given["src"]))
        if tag == "link" and given.get("href"):
            self.urls.append(str(given["href"]))


async def test_the_reference_page_loads_only_what_this_service_serves(world: World) -> None:
    page = await world.client.get("/schema")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    loads = _Loads()
    loads.feed(page.text)
    assert loads.urls, "the page loads its reference UI"
    for url in loads.urls:
        parts = urlsplit(url)
        assert not parts.scheme, url
        assert not parts.netloc, url
        assert url.startswith("/schema/"), url
        served = await world.client.get(url)
        assert served.status_code == 200, url
        assert served.headers["content-type"].startswith("text/javascript"), url
        assert len(served.content) > 100_000, url  # the bundle itself, not an error page
    # no style that imports from elsewhere either
    assert not re.search(r"@import|url\(\s*['\"]?(https?:)?//", page.text)


@pytest.fixture
def live(service_urls: tuple[str, str], tmp_path: Path) -> Iterator[LiveEcard]:
    server = asyncio.run(LiveEcard.create("cq", service_urls, tmp_path / "live", name="reference"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (apt-get install -y chromium)")
async def test_the_reference_page_renders_the_api_in_a_browser_cut_off_from_other_hosts(live: LiveEcard) -> None:
    elsewhere: list[str] = []
    own = urlsplit(live.base).netloc
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        try:
            page = await browser.new_page()

            async def only_this_service(route: Route, request: Request) -> None:
                if urlsplit(request.url).netloc in {own, ""} or request.url.startswith(("blob:", "data:")):
                    await route.continue_()
                else:
                    elsewhere.append(request.url)
                    await route.abort()

            await page.route("**/*", only_this_service)
            await page.goto(f"{live.base}/schema")
            await page.get_by_role("heading", name="Verify a dynamic code for a catalog item").wait_for(timeout=30_000)
        finally:
            await browser.close()
    assert elsewhere == []
