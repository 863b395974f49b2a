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
from collections.abc import Callable, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

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

    On one Redis this is one pipeline, one round trip. On a cluster each part is a pipeline of its own to its
    slot's master, and a failure is raised only once every part has settled: a claim that one master made while
    another failed is then in place for the caller to give back. (redis-py's cluster pipeline raises the first
    node's failure while the other nodes' writes are still in flight, so a claim could land after its release.)"""
    if isinstance(redis, RedisCluster):
        settled = await asyncio.gather(*(_execute_part(redis, part) for part in parts), return_exceptions=True)
        for outcome in settled:
            if isinstance(outcome, BaseException):
                raise outcome
        return [outcome for outcome in settled if not isinstance(outcome, BaseException)]
    async with redis.pipeline(transaction=False) as pipe:
        sizes = []
        for part in parts:
            before = len(pipe)
            part(pipe)
            sizes.append(len(pipe) - before)
        answers = await pipe.execute()
    split, start = [], 0
    for size in sizes:
        split.append(answers[start : start + size])
        start += size
    return split


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
