"""When PostgreSQL or Redis goes away the service says 503 (never accepts), and recovers by itself."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from ecard.app import create_app
from ecard.config import Settings
from ecard.kit.clock import MovableClock
from tests.conftest import reset_database, running
from tests.ops.proxy import Proxy
from tests.support import Actor, World, problem

RECOVERY_DEADLINE_S = 5.0
# fails a request that hangs; how fast it gives up is for the load figures, not for a test on a shared machine
HANG_GUARD_S = 30.0


@contextlib.asynccontextmanager
async def _world_through(settings: Settings, clock: MovableClock, *, cache: bool) -> AsyncIterator[tuple[World, Proxy]]:
    """A running service whose cache (or database) is reached through a proxy the test controls."""
    assert settings.database_url
    assert settings.redis_url
    await reset_database(settings.database_url)
    upstream = settings.redis_url if cache else settings.database_url
    proxy = Proxy.to(upstream)
    await proxy.start()
    proxied = (
        dataclasses.replace(settings, redis_url=proxy.url(upstream))
        if cache
        else dataclasses.replace(settings, database_url=proxy.url(upstream))
    )
    app = create_app(proxied, clock=clock)
    try:
        async with (
            running(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app),  # type: ignore[arg-type]
                base_url="http://testserver.local",
            ) as client,
        ):
            yield World(app, client, clock), proxy
            # Whatever the test did, the proxy is up again for the app's shutdown.
            if not proxy.running:
                await proxy.start()
    finally:
        await proxy.stop()


async def _ready(world: World) -> tuple[Actor, Actor]:
    merchant = await world.merchant(["wl-030"])
    device = await world.device("张小三")
    # the path works before anything breaks
    answer = await world.verify(merchant, await world.code(device), "wl-030")
    assert answer.status_code == 200, answer.text
    return merchant, device


async def _recovered(world: World, merchant: Actor, device: Actor) -> httpx.Response:
    """Mint and verify a fresh code, retrying while the service replaces its dead connections."""
    deadline = time.monotonic() + RECOVERY_DEADLINE_S
    while True:
        minted = await world.signed(device, "POST", "/v1/codes", {})
        if minted.status_code == 201:
            answer = await world.verify(merchant, minted.json()["code"], "wl-030")
            if answer.status_code == 200:
                return answer
            assert answer.status_code == 503, answer.text
        else:
            assert minted.status_code == 503, minted.text
        if time.monotonic() > deadline:
            return answer if minted.status_code == 201 else minted
        await world.client.get("/readyz")  # gives the pools a moment, and a reason, to reconnect


async def test_cache_outage_is_a_503_and_never_an_accept(settings: Settings, clock: MovableClock) -> None:
    async with _world_through(settings, clock, cache=True) as (world, proxy):
        merchant, device = await _ready(world)
        code = await world.code(device)
        await proxy.stop()

        # an answer, not a hang: the client's own timeouts give up on the cache (the bound is only a hang guard)
        answer = await asyncio.wait_for(world.verify(merchant, code, "wl-030"), HANG_GUARD_S)
        assert problem(answer) == (503, "cache_unavailable")
        assert answer.headers.get("retry-after") == "1"

        ready = await world.client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json() == {"status": "not_ready", "database": "ok", "cache": "unavailable"}

        # Every signed request spends its nonce in the cache: minting a code is refused the same way.
        minted = await world.signed(device, "POST", "/v1/codes", {})
        assert problem(minted) == (503, "cache_unavailable")


async def test_database_outage_is_a_503_and_never_an_accept(settings: Settings, clock: MovableClock) -> None:
    async with _world_through(settings, clock, cache=False) as (world, proxy):
        merchant, device = await _ready(world)
        code = await world.code(device)
        await proxy.stop()

        answer = await asyncio.wait_for(world.verify(merchant, code, "wl-030"), HANG_GUARD_S)
        assert problem(answer) == (503, "database_unavailable")
        assert answer.headers.get("retry-after") == "1"
        # Every further try answers the same way while the database is away.
        again = await world.verify(merchant, code, "wl-030")
        assert problem(again) == (503, "database_unavailable")

        ready = await world.client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json() == {"status": "not_ready", "database": "unavailable", "cache": "ok"}


@pytest.mark.parametrize(
    ("cache", "service", "code"), [(True, "cache", "cache_unavailable"), (False, "database", "database_unavailable")]
)
async def test_service_recovers_from_an_outage_without_a_restart(
    settings: Settings, clock: MovableClock, cache: bool, service: str, code: str
) -> None:
    async with _world_through(settings, clock, cache=cache) as (world, proxy):
        merchant, device = await _ready(world)
        minted = await world.code(device)
        await proxy.stop()
        assert problem(await world.verify(merchant, minted, "wl-030")) == (503, code)

        await proxy.start()
        answer = await _recovered(world, merchant, device)
        assert answer.status_code == 200, answer.text
        assert answer.json()["result"] == "accepted"
        ready = await world.client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()[service] == "ok"


async def test_a_code_refused_for_a_database_outage_is_not_used_up(settings: Settings, clock: MovableClock) -> None:
    """An outage is no answer about the code: the 503 the terminal saw must not burn the holder's code."""
    async with _world_through(settings, clock, cache=False) as (world, proxy):
        merchant, device = await _ready(world)
        code = await world.code(device)
        await proxy.stop()
        assert problem(await world.verify(merchant, code, "wl-030")) == (503, "database_unavailable")
        await proxy.start()
        await _recovered(world, merchant, device)

        # the terminal retries the same code, well within its lifetime
        again = await world.verify(merchant, code, "wl-030")
        assert again.status_code == 200, again.text
        assert again.json()["result"] == "accepted"
