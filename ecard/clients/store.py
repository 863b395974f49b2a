"""SQL for the client key registry, and the Redis claim of a request's nonce."""

from __future__ import annotations

import asyncpg
import redis.asyncio as aioredis

from ecard.clients.models import KeyRow
from ecard.kit import cache
from ecard.kit.infra import Executor


async def insert_key(
    conn: Executor,
    key_id: str,
    kind: str,
    owner_id: str,
    parent_id: str | None,
    public_jwk: dict[str, str],
    alg: str,
    thumbprint: str,
    *,
    minted: bool,
) -> None:
    await conn.execute(
        "INSERT INTO client_keys (key_id, kind, owner_id, parent_id, public_jwk, alg, thumbprint, minted)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        key_id,
        kind,
        owner_id,
        parent_id,
        public_jwk,
        alg,
        thumbprint,
        minted,
    )


async def key_by_id(pool: asyncpg.Pool, key_id: str) -> KeyRow | None:
    row = await pool.fetchrow(
        "SELECT key_id, kind, owner_id, parent_id, public_jwk, alg, status FROM client_keys WHERE key_id = $1",
        key_id,
    )
    return KeyRow(**row) if row else None


async def unminted_key_ids(pool: asyncpg.Pool, *, legacy: bool) -> set[str]:
    """Key ids without a minted tag: those of the service's own form (`key_...`, registered before tags),
    or else the others (partner keys, `<issuer>:<kid>`)."""
    rows = await pool.fetch(
        "SELECT key_id FROM client_keys WHERE NOT minted AND (key_id LIKE 'key\\_%') = $1",
        legacy,
    )
    return {r["key_id"] for r in rows}


async def set_owner_status(conn: Executor, owner_id: str, status: str) -> list[str]:
    rows = await conn.fetch(
        "UPDATE client_keys SET status = $2 WHERE owner_id = $1 OR parent_id = $1 RETURNING key_id",
        owner_id,
        status,
    )
    return [r["key_id"] for r in rows]


async def claim_nonce(redis: aioredis.Redis, key: str, ttl_s: int) -> bool:
    """True when this nonce had not been claimed before (a claim with the window's TTL, ecard/kit/cache.py)."""
    return await cache.claim(redis, key, cache.new_token(), ex=ttl_s)
