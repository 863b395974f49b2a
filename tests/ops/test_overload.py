"""A busy cache is `overloaded` (shed with Retry-After, counted in /metrics), never `cache_unavailable`; a
stopped one is `cache_unavailable`. The Redis pool queues for a connection, with a bound."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
import uuid
from collections import Counter
from collections.abc import AsyncIterator

import httpx
import redis.asyncio as aioredis

from ecard.app import create_app
from ecard.config import Settings
from ecard.kit.clock import MovableClock
from tests.conftest import reset_database, running
from tests.ops.proxy import Proxy
from tests.support import World, problem

# fails a request that hangs; not a figure of how fast the service gives up
HANG_GUARD_S = 30.0


@contextlib.asynccontextmanager
async def _world(settings: Settings, clock: MovableClock) -> AsyncIterator[World]:
    assert settings.database_url
    await reset_database(settings.database_url)
    app = create_app(settings, clock=clock)
    async with (
        running(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),  # type: ignore[arg-type]
            base_url="http://testserver.local",
        ) as client,
    ):
        yield World(app, client, clock)


async def _shed_count(world: World) -> float:
    text = (await world.client.get("/metrics")).text
    found = re.search(r'^ecard_shed_total\{reason="cache_pool"\} (\S+)$', text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


@contextlib.asynccontextmanager
async def _every_connection_busy(world: World, settings: Settings) -> AsyncIterator[None]:
    """The app's only cache connection held by a blocking read (BLPOP) until the block is left."""
    app_redis: aioredis.Redis = world.app.state.redis
    key = f"{settings.redis_prefix}held:{uuid.uuid4().hex}"

    async def hold() -> None:
        await app_redis.blpop([key], timeout=HANG_GUARD_S)

    held = asyncio.create_task(hold())
    assert settings.redis_url
    observer = aioredis.Redis.from_url(settings.redis_url)
    try:
        async with asyncio.timeout(HANG_GUARD_S):
            while True:
                if any(c.get("cmd") == "blpop" for c in await observer.client_list()):
                    break
                await asyncio.sleep(0.01)
        yield
    finally:
        await observer.lpush(key, b"done")
        await held
        await observer.aclose()


async def test_a_busy_cache_is_overloaded_with_retry_after_and_counted(settings: Settings, clock: MovableClock) -> None:
    tiny = dataclasses.replace(settings, redis_pool_size=1, redis_pool_wait_s=0.2)
    async with _world(tiny, clock) as world:
        merchant = await world.merchant(["wl-030"])
        device = await world.device()
        codes = [await world.code(device) for _ in range(5)]
        before = await _shed_count(world)

        async with _every_connection_busy(world, tiny):
            answers = await asyncio.gather(*(world.verify(merchant, code, "wl-030") for code in codes))
            ready = await world.client.get("/readyz")

        assert Counter(problem(a) for a in answers) == {(503, "overloaded"): 5}
        assert all(a.headers.get("retry-after") == "1" for a in answers)
        assert ready.status_code == 503
        assert ready.json() == {"status": "not_ready", "database": "ok", "cache": "busy"}
        # the five requests and the readiness probe at least; background loops sharing the tiny pool may add more
        assert await _shed_count(world) >= before + 6
        # shed before anything was claimed: once the cache is free, every one of the codes is still good
        again = [await world.verify(merchant, code, "wl-030") for code in codes]
        assert [a.status_code for a in again] == [200] * 5, [a.text for a in again]
        assert await world.app.state.pool.fetchval("SELECT count(*) FROM verifications") == 5


async def test_requests_beyond_the_pool_queue_for_a_connection(settings: Settings, clock: MovableClock) -> None:
    tiny = dataclasses.replace(settings, redis_pool_size=2, redis_pool_wait_s=HANG_GUARD_S)
    async with _world(tiny, clock) as world:
        merchant = await world.merchant(["wl-030"])
        channel = await world.channel()
        devices = [await world.device(f"张{chr(0x4E00 + i)}三", channel=channel) for i in range(20)]
        codes = [await world.code(device) for device in devices]
        before = await _shed_count(world)

        answers = await asyncio.gather(*(world.verify(merchant, code, "wl-030") for code in codes))

        assert [a.status_code for a in answers] == [200] * 20, [a.text for a in answers if a.status_code != 200]
        assert await _shed_count(world) == before


async def test_a_stopped_cache_behind_a_tiny_pool_is_cache_unavailable(settings: Settings, clock: MovableClock) -> None:
    assert settings.redis_url
    proxy = Proxy.to(settings.redis_url)
    await proxy.start()
    tiny = dataclasses.replace(
        settings, redis_url=proxy.url(settings.redis_url), redis_pool_size=1, redis_pool_wait_s=0.2
    )
    try:
        async with _world(tiny, clock) as world:
            merchant = await world.merchant(["wl-030"])
            device = await world.device()
            codes = [await world.code(device) for _ in range(3)]
            await proxy.stop()

            answers = await asyncio.wait_for(
                asyncio.gather(*(world.verify(merchant, code, "wl-030") for code in codes)), HANG_GUARD_S
            )

            assert Counter(problem(a) for a in answers) == {(503, "cache_unavailable"): 3}
            await proxy.start()
    finally:
        await proxy.stop()
