"""The console against a live installation on loopback, driven in Debian's Chromium."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.browser import browser
from tests.live import LiveEcard

__all__ = ["browser"]  # the fixture, used by name

DUAL_FEN = 100_000


@pytest.fixture
async def live(service_urls: tuple[str, str], tmp_path: Path) -> AsyncIterator[LiveEcard]:
    server = await LiveEcard.create(
        "cq",
        service_urls,
        tmp_path / "live",
        name="console_browser",
        ECARD_DISBURSEMENT_DUAL_APPROVAL_FEN=str(DUAL_FEN),
    )
    await asyncio.to_thread(server.start)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.stop)
