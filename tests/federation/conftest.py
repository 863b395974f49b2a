"""Two live issuers, `cq` and `sc`, and the 渝快办 stand-in, as real servers on loopback ports, wired as partners."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.live import LiveEcard, LiveWorld
from tests.standins import StandinYukuai


@dataclass
class Provinces:
    cq: LiveEcard
    sc: LiveEcard
    yukuai: StandinYukuai


def _added(live: LiveEcard, *args: str) -> None:
    run = live.cli("partners", "add", *args)
    assert run.returncode == 0, run.stderr


@pytest.fixture(scope="module")
def provinces(service_urls: tuple[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Provinces]:
    folder = tmp_path_factory.mktemp("provinces")
    quick = {
        "ECARD_PARTNER_BREAKER_COOLDOWN_S": "1",
        "ECARD_PARTNER_REFRESH_S": "1",
        "ECARD_PARTNER_TIMEOUT_MS": "800",
    }
    cq = asyncio.run(LiveEcard.create("cq", service_urls, folder / "cq", **quick))
    sc = asyncio.run(LiveEcard.create("sc", service_urls, folder / "sc", **quick))
    yukuai = StandinYukuai(folder, f"{cq.base}/v1/issuer/request-keys")
    cq.env["ECARD_YUKUAI_URL"] = yukuai.base
    try:
        cq.start()
        sc.start()
        yukuai.start()
        # each province registers the other, fetching its request key from where it publishes it
        _added(cq, "--issuer", "sc", "--name", "四川省电子社保卡", "--base-url", sc.base)
        _added(sc, "--issuer", "cq", "--name", "重庆市电子社保卡", "--base-url", cq.base)
        _added(cq, "--issuer", "ykb", "--name", "渝快办", "--base-url", yukuai.base, "--region", "cq")
        yield Provinces(cq, sc, yukuai)
    finally:
        for stop in (yukuai.kill, sc.stop, cq.stop):
            with contextlib.suppress(Exception):
                stop()


@pytest.fixture
async def cq(provinces: Provinces) -> AsyncIterator[LiveWorld]:
    async with httpx.AsyncClient(base_url=provinces.cq.base, timeout=10.0) as client:
        yield provinces.cq.world(client)


@pytest.fixture
async def sc(provinces: Provinces) -> AsyncIterator[LiveWorld]:
    async with httpx.AsyncClient(base_url=provinces.sc.base, timeout=10.0) as client:
        yield provinces.sc.world(client)
