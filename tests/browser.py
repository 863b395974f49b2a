"""Debian's Chromium driven by Playwright, for every browser test: the browser, axe-core's accessibility check, and
screenshots kept as test artifacts.

Import the fixtures into a test package's conftest.py (`from tests.browser import browser`) and mark the module
with `needs_chromium`. Screenshots land in `test-artifacts/screenshots/` (ECARD_TEST_ARTIFACTS moves it)."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from axe_playwright_python.async_playwright import Axe
from playwright.async_api import Browser, Page, async_playwright

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("ECARD_TEST_ARTIFACTS", Path(__file__).resolve().parent.parent / "test-artifacts"))

needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian's chromium is not installed (apt-get install -y chromium)"
)

# as root in a container there are no user namespaces for Chromium's sandbox; the closed network refuses the
# browser's own background connections, so they are switched off rather than left to fail
_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

_AXE = Axe()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


async def serious_violations(page: Page) -> list[str]:
    """axe-core's serious and critical findings on the page as it is now, one line each (rule: first target)."""
    results = await _AXE.run(page)
    found = []
    for violation in results.response["violations"]:
        if violation["impact"] in {"serious", "critical"}:
            targets = [str(node["target"]) for node in violation["nodes"]]
            found.append(f"{violation['id']} ({violation['impact']}): {violation['help']} at {targets[:3]}")
    return found


async def screenshot(page: Page, name: str) -> Path:
    """A full-page PNG under test-artifacts/screenshots/, named after the test step."""
    folder = ARTIFACTS / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', name)}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path
