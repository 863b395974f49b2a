"""A busy cache or database is `overloaded` (shed with Retry-After, counted in /metrics), never
`cache_unavailable`; a stopped cache is `cache_unavailable`. The Redis and database pools queue for a connection,
with a bound."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
import uuid
from collections import Counter
from collections.abc import AsyncIterator

import asyncpg
import httpx
import redis.asyncio as aioredis

from ecard.app import create_app
from ecard.config import Settings
from ecard.kit.clock import MovableClock
from ecard.kit.infra import create_pool
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


async def _shed_count(world: World, reason: str = "cache_pool") -> float:
    text = (await world.client.get("/metrics")).text
    found = re.search(rf'^ecard_shed_total\{{reason="{reason}"\}} (\S+)$', text, re.MULTILINE)
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


async def test_a_busy_database_pool_is_overloaded_then_serves_again(settings: Settings, clock: MovableClock) -> None:
    tiny = dataclasses.replace(settings, db_pool_min=1, db_pool_max=2, db_pool_wait_s=0.5)
    async with _world(tiny, clock) as world:
        merchant = await world.merchant(["wl-030"])
        device = await world.device()
        codes = [await world.code(device) for _ in range(3)]
        # one verification first, so that what the route caches (terminal, item, merchant, keys) is warm
        assert (await world.verify(merchant, await world.code(device), "wl-030")).status_code == 200
        before = await _shed_count(world, "database_pool")

        # both of the app's database connections, taken and held as two long queries would hold them
        pool: asyncpg.Pool = world.app.state.pool
        async with asyncio.timeout(HANG_GUARD_S), pool.acquire():
            held = await pool.acquire()
            try:
                answers = await asyncio.gather(*(world.verify(merchant, code, "wl-030") for code in codes))
                ready = await world.client.get("/readyz")
            finally:
                await pool.release(held)

        assert Counter(problem(a) for a in answers) == {(503, "overloaded"): 3}
        assert all(a.headers.get("retry-after") == "1" for a in answers)
        assert ready.status_code == 503
        assert ready.json() == {"status": "not_ready", "database": "busy", "cache": "ok"}
        # a query shed for the verifications (one, when their records went into one group commit) and one for the
        # readiness probe at least; background loops sharing the pool may add more
        assert await _shed_count(world, "database_pool") >= before + 2
        # nothing was used up by the shed requests: with the connections free, each code is accepted once
        again = [await world.verify(merchant, code, "wl-030") for code in codes]
        assert [a.status_code for a in again] == [200] * 3, [a.text for a in again]
        assert await pool.fetchval("SELECT count(*) FROM verifications") == 4
        assert (await world.client.get("/readyz")).json() == {"status": "ready", "database": "ok", "cache": "ok"}


async def test_cancelled_waiters_and_holders_leave_the_database_pool_whole(settings: Settings) -> None:
    assert settings.database_url
    pool = await create_pool(settings.database_url, 1, 2, wait_s=HANG_GUARD_S)

    async def take() -> object:
        return await pool.acquire()

    async def at_the_gate(*waiters: asyncio.Task[object]) -> None:
        # with both connections taken, a waiter's first suspension is at the gate
        await asyncio.sleep(0)
        assert not any(w.done() for w in waiters)

    try:
        async with asyncio.timeout(HANG_GUARD_S):
            held = await pool.acquire()
            querying = asyncio.Event()

            async def hold_in_a_query() -> None:
                async with pool.acquire() as conn:
                    querying.set()
                    await conn.execute("SELECT pg_sleep($1)", HANG_GUARD_S)

            holder = asyncio.create_task(hold_in_a_query())
            await querying.wait()

            waiters = [asyncio.create_task(pool.fetchval("SELECT 1")), asyncio.create_task(take())]
            await at_the_gate(*waiters)
            for waiter in waiters:
                waiter.cancel()
            assert all(
                isinstance(r, asyncio.CancelledError) for r in await asyncio.gather(*waiters, return_exceptions=True)
            )

            # a waiter handed the permit of a lost connection and cancelled before it could run: asyncio runs the
            # permit's return (scheduled by the loss) and then the cancellation, in the order they were scheduled
            racer = asyncio.create_task(take())
            await at_the_gate(racer)
            held.terminate()
            asyncio.get_running_loop().call_soon(racer.cancel)
            assert isinstance((await asyncio.gather(racer, return_exceptions=True))[0], asyncio.CancelledError)
            await pool.release(held)  # already back in the pool: nothing more is given back

            # cancelled in the middle of its query, holding a connection
            holder.cancel()
            assert isinstance((await asyncio.gather(holder, return_exceptions=True))[0], asyncio.CancelledError)

            both = [await pool.acquire(), await pool.acquire()]
            assert [await conn.fetchval("SELECT 1") for conn in both] == [1, 1]
            for conn in both:
                await pool.release(conn)
            await pool.close()
    finally:
        pool.terminate()
