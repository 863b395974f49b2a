"""The single-use claims of the calls made on one Redis in one turn of the event loop go out as one round trip,
and each caller still gets its own answers and its own errors."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
import redis.exceptions

from ecard.config import Settings
from ecard.kit import cache
from ecard.kit.infra import BoundedPool, CacheBusy, create_redis, unavailable_code
from ecard.kit.metrics import REGISTRY

# fails a call that hangs; not a figure of how fast the cache gives up
HANG_GUARD_S = 30.0


class _CountingPool(BoundedPool):
    """The pool `create_redis` makes, counting the connections it hands out: a pipeline takes one per round trip."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.checkouts = 0

    async def get_connection(self, *args: object, **kwargs: object) -> Any:
        self.checkouts += 1
        return await super().get_connection(*args, **kwargs)


@pytest.fixture
async def counted(settings: Settings) -> AsyncIterator[tuple[aioredis.Redis, _CountingPool, str]]:
    """(client, its pool, the name its connections give the server)."""
    assert settings.redis_url
    name = f"batch-{uuid.uuid4().hex[:12]}"
    pool = _CountingPool.from_url(settings.redis_url, wait_s=1.0, max_connections=50, client_name=name)
    client = aioredis.Redis.from_pool(pool)
    yield client, pool, name
    await client.aclose()


@pytest.fixture
async def observer(settings: Settings) -> AsyncIterator[aioredis.Redis]:
    """A client of its own, outside every batch, to look at what the batches left in Redis."""
    assert settings.redis_url
    client = aioredis.Redis.from_url(settings.redis_url)
    yield client
    await client.aclose()


def _claim(key: str, token: bytes) -> cache.Part:
    return lambda pipe: cache.queue_claim(pipe, key, token, ex=60)


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _connections_named(observer: aioredis.Redis, name: str) -> list[dict[str, Any]]:
    return [c for c in await observer.client_list() if c.get("name") == name]


def _shed() -> float:
    return REGISTRY.get_sample_value("ecard_shed_total", {"reason": "cache_pool"}) or 0.0


async def _blocked(observer: aioredis.Redis, name: str) -> bool:
    return any(c.get("cmd") == "blpop" for c in await _connections_named(observer, name))


async def _exists(observer: aioredis.Redis, key: str) -> bool:
    return bool(await observer.exists(key))


async def _until(seen: Callable[[], Awaitable[bool]]) -> None:
    """Until the server shows what the test waits for."""
    async with asyncio.timeout(HANG_GUARD_S):
        while True:
            if await seen():
                return
            await asyncio.sleep(0.01)


async def test_calls_in_one_tick_share_one_round_trip(
    counted: tuple[aioredis.Redis, _CountingPool, str], observer: aioredis.Redis, settings: Settings
) -> None:
    client, pool, name = counted
    keys = [f"{settings.redis_prefix}tick:{n}" for n in range(50)]
    tokens = [cache.new_token() for _ in keys]
    await observer.set(keys[7], tokens[7], ex=60)

    def claim_and_read(key: str, token: bytes) -> list[cache.Part]:
        return [_claim(key, token), lambda pipe: pipe.get(key)]

    answers = await asyncio.gather(
        *(cache.execute_settled(client, claim_and_read(k, t)) for k, t in zip(keys, tokens, strict=True))
    )

    assert pool.checkouts == 1
    # the server saw one connection of this client, which carried every caller's commands
    assert len(await _connections_named(observer, name)) == 1
    assert answers == [[[t if k == keys[7] else None], [t]] for k, t in zip(keys, tokens, strict=True)]


async def test_calls_beyond_a_batchs_cap_go_in_the_next(
    counted: tuple[aioredis.Redis, _CountingPool, str], settings: Settings
) -> None:
    client, pool, _ = counted
    keys = [f"{settings.redis_prefix}cap:{n}" for n in range(300)]
    token = cache.new_token()

    answers = await asyncio.gather(*(cache.execute_settled(client, [_claim(key, token)]) for key in keys))

    assert pool.checkouts == 2
    assert answers == [[[None]]] * 300


async def test_two_callers_racing_for_one_key_in_one_tick_one_wins(
    counted: tuple[aioredis.Redis, _CountingPool, str], observer: aioredis.Redis, settings: Settings
) -> None:
    client, pool, _ = counted
    key = f"{settings.redis_prefix}race"
    first, second = cache.new_token(), cache.new_token()

    answers = await asyncio.gather(
        cache.execute_settled(client, [_claim(key, first)]), cache.execute_settled(client, [_claim(key, second)])
    )

    assert pool.checkouts == 1
    assert [cache.won(a[0][0], t) for a, t in zip(answers, (first, second), strict=True)] == [True, False]
    assert answers[1] == [[first]]
    assert await observer.get(key) == first


async def test_a_callers_command_error_is_raised_to_it_alone(
    counted: tuple[aioredis.Redis, _CountingPool, str], observer: aioredis.Redis, settings: Settings
) -> None:
    client, pool, _ = counted
    listed = f"{settings.redis_prefix}a-list"
    await observer.rpush(listed, b"x")
    await observer.expire(listed, 60)
    keys = [f"{settings.redis_prefix}err:{n}" for n in range(3)]
    token = cache.new_token()

    outcomes = await asyncio.gather(
        cache.execute_settled(client, [_claim(keys[0], token)]),
        cache.execute_settled(client, [_claim(keys[1], token), lambda pipe: pipe.get(listed)]),
        cache.execute_settled(client, [_claim(keys[2], token)]),
        return_exceptions=True,
    )

    assert pool.checkouts == 1
    assert outcomes[0] == [[None]]
    assert outcomes[2] == [[None]]
    error = outcomes[1]
    assert isinstance(error, redis.exceptions.ResponseError)
    assert "WRONGTYPE" in str(error)
    # numbered within its own caller's commands, as its own pipeline would have
    assert str(error).startswith("Command # 2 (GET ")
    # the commands before the error ran, as in any pipeline that is not a transaction
    assert await observer.get(keys[1]) == token


async def test_a_part_that_cannot_queue_fails_its_caller_alone_and_sends_nothing_of_it(
    counted: tuple[aioredis.Redis, _CountingPool, str], observer: aioredis.Redis, settings: Settings
) -> None:
    client, pool, _ = counted
    claimed, unsent, bad = (f"{settings.redis_prefix}queue:{n}" for n in ("claimed", "unsent", "bad"))
    token = cache.new_token()

    outcomes = await asyncio.gather(
        cache.execute_settled(client, [_claim(unsent, token), lambda pipe: pipe.set(bad, token, ex=60, px=60_000)]),
        cache.execute_settled(client, [_claim(claimed, token)]),
        return_exceptions=True,
    )

    assert isinstance(outcomes[0], redis.exceptions.DataError)
    assert outcomes[1] == [[None]]
    assert pool.checkouts == 1
    assert await observer.exists(unsent, bad) == 0


async def test_a_cache_that_is_away_fails_every_caller_without_a_hang(settings: Settings) -> None:
    client = create_redis(f"redis://127.0.0.1:{_closed_port()}/0")
    token = cache.new_token()
    try:
        async with asyncio.timeout(HANG_GUARD_S):
            outcomes = await asyncio.gather(
                *(cache.execute_settled(client, [_claim(f"{settings.redis_prefix}away:{n}", token)]) for n in range(5)),
                return_exceptions=True,
            )
    finally:
        await client.aclose()

    assert all(isinstance(o, redis.exceptions.ConnectionError) for o in outcomes), outcomes
    assert {unavailable_code(o) for o in outcomes if isinstance(o, BaseException)} == {"cache_unavailable"}


async def test_every_connection_busy_is_cache_busy_to_every_caller(
    settings: Settings, observer: aioredis.Redis
) -> None:
    assert settings.redis_url
    name = f"busy-{uuid.uuid4().hex[:12]}"
    pool = _CountingPool.from_url(settings.redis_url, wait_s=0.2, max_connections=1, client_name=name)
    client = aioredis.Redis.from_pool(pool)
    gate = f"{settings.redis_prefix}held"

    async def hold() -> None:
        await client.blpop([gate], timeout=HANG_GUARD_S)

    held = asyncio.create_task(hold())
    token = cache.new_token()
    try:
        await _until(lambda: _blocked(observer, name))
        before = _shed()
        outcomes = await asyncio.gather(
            *(cache.execute_settled(client, [_claim(f"{settings.redis_prefix}busy:{n}", token)]) for n in range(3)),
            return_exceptions=True,
        )
    finally:
        await observer.lpush(gate, b"done")
        await held
        await client.aclose()

    assert all(isinstance(o, CacheBusy) for o in outcomes), outcomes
    assert {unavailable_code(o) for o in outcomes if isinstance(o, BaseException)} == {"overloaded"}
    # one wait of the pool shed a whole batch: every request in it counts
    assert _shed() == before + 3


async def test_a_cancelled_caller_does_not_break_its_batch(
    counted: tuple[aioredis.Redis, _CountingPool, str], observer: aioredis.Redis, settings: Settings
) -> None:
    client, pool, _ = counted
    early, landed, other = (f"{settings.redis_prefix}cancel:{n}" for n in ("early", "landed", "other"))
    gate = f"{settings.redis_prefix}gate"
    token = cache.new_token()
    callers = {
        key: asyncio.create_task(cache.execute_settled(client, [_claim(key, token)])) for key in (early, landed, other)
    }
    # last in the batch: Redis runs the claims before it, then holds the round trip open until the gate opens
    gated = asyncio.create_task(cache.execute_settled(client, [lambda pipe: pipe.blpop([gate], timeout=HANG_GUARD_S)]))

    await asyncio.sleep(0)  # every caller has joined the batch; its flush is the loop's next callback
    callers[early].cancel()
    await _until(lambda: _exists(observer, landed))
    callers[landed].cancel()
    await observer.lpush(gate, b"go")

    async with asyncio.timeout(HANG_GUARD_S):
        assert await callers[other] == [[None]]
        assert [list(answer) for answer in (await gated)[0]] == [[gate.encode(), b"go"]]
    for key in (early, landed):
        with pytest.raises(asyncio.CancelledError):
            await callers[key]
    assert pool.checkouts == 1
    # sent before its caller went away, its claim stands; a caller gone before the flush was left out
    assert await observer.get(landed) == token
    assert await observer.exists(early) == 0


def test_a_client_used_in_another_event_loop_batches_there(settings: Settings) -> None:
    assert settings.redis_url
    client = create_redis(settings.redis_url)
    token = cache.new_token()

    async def claim_in_this_loop(key: str) -> list[list[Any]]:
        try:
            return await cache.execute_settled(client, [_claim(key, token)])
        finally:
            await client.connection_pool.disconnect()

    assert asyncio.run(claim_in_this_loop(f"{settings.redis_prefix}loop:1")) == [[None]]
    assert asyncio.run(claim_in_this_loop(f"{settings.redis_prefix}loop:2")) == [[None]]
