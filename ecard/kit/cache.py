"""Single-use claims in Redis that a retried write recognises as its own, and the hash tags that spread them.

A claim is `SET key token NX GET`: it is ours when the key was free (the answer is nil) or already holds our own
token (a retry after a lost reply, on the same master or on the replica promoted in its place). A client that
retries after a failed master therefore never mistakes its own first write for someone else's use.

On a Redis Cluster every step that must be atomic touches one slot. Keys that belong to one thing carry that
thing in braces, the hash tag (`ecard:nonce:{<key id>}:...`). Single-use claims of codes are spread over `SHARDS`
tags (`{s00}` ... `{s63}`) by their first byte; every revocation flag has a copy under each of these tags, so a
code's claim and its key's flag are always read in one slot (docs/redis-keys.md)."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ResponseError

from ecard.kit.infra import CacheBusy

SHARDS = 64
RELEASE_FOR_S = 60.0
RELEASE_EVERY_S = 0.2
# releases waiting for the cache to come back (a task needs a reference until it is done)
_RELEASING: set[asyncio.Task[None]] = set()

# delete the key only while it still holds this claim's token: a release never frees another request's claim
_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


def shard_tag(value: bytes) -> str:
    """The hash tag of the shard a random or digested value falls in, e.g. `{s07}`."""
    return f"{{s{value[0] % SHARDS:02d}}}"


def all_shard_tags() -> list[str]:
    return [f"{{s{shard:02d}}}" for shard in range(SHARDS)]


def any_shard_tag() -> str:
    """A shard picked at random, for reads every shard can answer (the revocation flags), to spread their load."""
    return shard_tag(secrets.token_bytes(1))


def new_token() -> bytes:
    """The value one request writes into every key it claims."""
    return secrets.token_bytes(12)


def won(answer: object, token: bytes) -> bool:
    """Whether a claim's `SET ... NX GET` answer means the key is this request's."""
    return answer is None or answer == token


def queue_claim(
    pipe: aioredis.client.Pipeline, key: str, token: bytes, ex: int | None = None, pxat: int | None = None
) -> None:
    pipe.set(key, token, nx=True, get=True, ex=ex, pxat=pxat)


async def claim(redis: aioredis.Redis, key: str, token: bytes, ex: int | None = None) -> bool:
    """True when the key was free (or held this token already): it is now this request's for `ex` seconds."""
    return won(await redis.set(key, token, nx=True, get=True, ex=ex), token)


# queues one slot's commands onto a pipeline
Part = Callable[[aioredis.client.Pipeline], object]


async def execute_settled(redis: aioredis.Redis, parts: Sequence[Part]) -> list[list[Any]]:
    """The answers of each part's commands, each part's keys in one slot.

    On one Redis the parts of every call made in one turn of the event loop go out as one pipeline, one round
    trip (`TickPipeline`). On a cluster each part is a pipeline of its own to its slot's master, and a failure is
    raised only once every part has settled: a claim that one master made while another failed is then in place
    for the caller to give back. (redis-py's cluster pipeline raises the first node's failure while the other
    nodes' writes are still in flight, so a claim could land after its release.)"""
    if isinstance(redis, RedisCluster):
        settled = await asyncio.gather(*(_execute_part(redis, part) for part in parts), return_exceptions=True)
        for outcome in settled:
            if isinstance(outcome, BaseException):
                raise outcome
        return [outcome for outcome in settled if not isinstance(outcome, BaseException)]
    loop = asyncio.get_running_loop()
    ticks = _TICKS.get(redis)
    if ticks is None or ticks.loop is not loop:
        # a client outliving its event loop (a test's) starts afresh in the next: no future crosses loops
        ticks = _TICKS[redis] = TickPipeline(loop)
    return await ticks.execute(redis, parts)


_Waiter = tuple[Sequence[Part], asyncio.Future[list[list[Any]]]]


class TickPipeline:
    """The parts that the calls on one Redis hand it within one turn of the event loop go to it as one pipeline:
    redis-py's cost of a pipeline (a pooled connection taken and given back, its reset, its metrics) is paid once
    per batch rather than once per verification (issue 13).

    Each caller gets the answers of its own commands, and an error answer to one of them is raised to that caller
    only; a failure of the round trip (the cache away, every pooled connection busy) is raised to every caller in
    it. At most `in_flight` batches of `max_callers` are out at once; whatever arrives meanwhile goes in the next.
    A caller that went away before its batch was sent is left out of it; once sent, its claims land as before."""

    def __init__(self, loop: asyncio.AbstractEventLoop, in_flight: int = 4, max_callers: int = 256) -> None:
        self.loop = loop
        self._in_flight_max = in_flight
        self._max_callers = max_callers
        self._in_flight = 0
        self._waiting: list[_Waiter] = []
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def execute(self, redis: aioredis.Redis, parts: Sequence[Part]) -> list[list[Any]]:
        future: asyncio.Future[list[list[Any]]] = self.loop.create_future()
        self._waiting.append((parts, future))
        self._schedule(redis)
        return await future

    def _schedule(self, redis: aioredis.Redis) -> None:
        # on the next turn of the loop, so that every call arriving in this one joins the batch; the client is
        # passed along rather than kept, so that the registry of batchers holds no client alive
        if not self._scheduled and self._waiting and self._in_flight < self._in_flight_max:
            self._scheduled = True
            self.loop.call_soon(self._flush, redis)

    def _flush(self, redis: aioredis.Redis) -> None:
        self._scheduled = False
        batch, self._waiting = self._waiting[: self._max_callers], self._waiting[self._max_callers :]
        self._in_flight += 1
        task = self.loop.create_task(self._send(redis, batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self._schedule(redis)

    async def _send(self, redis: aioredis.Redis, waiting: list[_Waiter]) -> None:
        batch = [(parts, future) for parts, future in waiting if not future.done()]
        try:
            pipe = redis.pipeline(transaction=False)
            sizes = [_queue(pipe, parts, future) for parts, future in batch]
            commands = pipe.command_stack
            try:
                answers = await pipe.execute(raise_on_error=False)
            except Exception as exc:
                if isinstance(exc, CacheBusy):
                    _count_shed(sum(1 for size in sizes if size is not None) - 1)
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                return
            start = 0
            for (_, future), part_sizes in zip(batch, sizes, strict=True):
                if part_sizes is None:
                    continue
                end = start + sum(part_sizes)
                outcome = _own_answers(pipe, commands[start:end], answers[start:end], part_sizes)
                if not future.done():
                    if isinstance(outcome, Exception):
                        future.set_exception(outcome)
                    else:
                        future.set_result(outcome)
                start = end
        finally:
            for _, future in batch:
                # left only when this task was cancelled (its loop closing) or failed: no caller waits for ever
                if not future.done():
                    future.cancel()
            self._in_flight -= 1
            self._schedule(redis)


# one batcher per single-Redis client, made on its first call
_TICKS: weakref.WeakKeyDictionary[aioredis.Redis, TickPipeline] = weakref.WeakKeyDictionary()


def _queue(
    pipe: aioredis.client.Pipeline, parts: Sequence[Part], future: asyncio.Future[list[list[Any]]]
) -> list[int] | None:
    """The number of commands each part queued, or None when one of them failed to (its caller gets the error)."""
    sizes, start = [], len(pipe)
    try:
        for part in parts:
            before = len(pipe)
            part(pipe)
            sizes.append(len(pipe) - before)
    except Exception as exc:
        del pipe.command_stack[start:]
        future.set_exception(exc)
        return None
    return sizes


def _own_answers(
    pipe: aioredis.client.Pipeline, commands: list[Any], answers: list[Any], sizes: list[int]
) -> list[list[Any]] | Exception:
    """One caller's answers split by part, or the first error answer among them, worded as its own pipeline's."""
    for number, answer in enumerate(answers, 1):
        if isinstance(answer, ResponseError):
            pipe.annotate_exception(answer, number, commands[number - 1][0])
            return answer
    split, start = [], 0
    for size in sizes:
        split.append(answers[start : start + size])
        start += size
    return split


def _count_shed(more: int) -> None:
    """The pool counted the batch's wait as one request shed; the metric counts every request in it."""
    if more > 0:
        # imported here: `ecard serve` must set up shared metrics before prometheus_client is first imported
        from ecard.kit.metrics import SHED  # noqa: PLC0415

        SHED.labels(reason="cache_pool").inc(more)


async def _execute_part(redis: aioredis.Redis, part: Part) -> list[Any]:
    async with redis.pipeline(transaction=False) as pipe:
        part(pipe)
        return await pipe.execute()


async def release(redis: aioredis.Redis, keys: list[str], token: bytes) -> None:
    """Give claims back, all at once. A claim the cache cannot give back now (a master failed, the cluster is
    electing another) is given back in the background, for as long as `RELEASE_FOR_S`: a code presented during a
    failover must not be used up by it."""
    await asyncio.gather(*(_release(redis, key, token) for key in keys))


async def _release(redis: aioredis.Redis, key: str, token: bytes) -> None:
    try:
        await redis.eval(_RELEASE, 1, key, token)
    except aioredis.RedisError:
        later = asyncio.create_task(_release_later(redis, key, token))
        _RELEASING.add(later)
        later.add_done_callback(_RELEASING.discard)


async def _release_later(redis: aioredis.Redis, key: str, token: bytes) -> None:
    deadline = time.monotonic() + RELEASE_FOR_S
    while time.monotonic() < deadline:
        await asyncio.sleep(RELEASE_EVERY_S)
        with contextlib.suppress(aioredis.RedisError):
            await redis.eval(_RELEASE, 1, key, token)
            return
