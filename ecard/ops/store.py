"""The round trips that show PostgreSQL and Redis answer."""

from __future__ import annotations

import asyncpg
import redis.asyncio as aioredis


async def ping_database(pool: asyncpg.Pool, timeout_s: float) -> None:
    await pool.fetchval("SELECT 1", timeout=timeout_s)


async def ping_cache(redis: aioredis.Redis) -> None:
    await redis.ping()
