"""SQL for issuer keys and card-reference epochs, and the Redis flags and claims of code issuance."""

from __future__ import annotations

from datetime import datetime

import asyncpg
import redis.asyncio as aioredis

from ecard.codes.models import EpochRow, IssuerKeyRow
from ecard.kit import cache
from ecard.kit.infra import Conn, Executor
from ecard.kit.principal import NonceClaim

_KEY_LOCK = 0x6B657973


async def lock_keys(conn: Conn) -> None:
    """Key changes take turns, across every host, for the caller's transaction."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", _KEY_LOCK)


async def all_keys(pool: Executor) -> list[IssuerKeyRow]:
    rows = await pool.fetch(
        "SELECT kid, alg, public_key, private_key, status, not_before, not_after FROM issuer_keys ORDER BY created_at"
    )
    return [IssuerKeyRow(**r) for r in rows]


async def insert_active(
    conn: Conn,
    kid: bytes,
    public_key: bytes,
    private_sealed: bytes | None,
    retire_after: datetime,
) -> None:
    """Retire the active key (verifiable until `retire_after`) and make `kid` the active one."""
    await conn.execute(
        "UPDATE issuer_keys SET status = 'retired', not_after = $1 WHERE status = 'active'", retire_after
    )
    await conn.execute(
        "INSERT INTO issuer_keys (kid, alg, public_key, private_key, status) VALUES ($1, 'EdDSA', $2, $3, 'active')"
        " ON CONFLICT (kid) DO UPDATE SET status = 'active', not_after = NULL",
        kid,
        public_key,
        private_sealed,
    )


async def revoke(conn: Executor, kid: bytes, at: datetime) -> str | None:
    """Mark a key revoked; returns its former status, None if there is no such key."""
    row = await conn.fetchrow(
        "UPDATE issuer_keys k SET status = 'revoked', not_after = COALESCE(k.not_after, $2)"
        " FROM (SELECT kid, status FROM issuer_keys WHERE kid = $1 FOR UPDATE) old"
        " WHERE k.kid = old.kid RETURNING old.status",
        kid,
        at,
    )
    return None if row is None else str(row["status"])


async def revoked_kids(pool: asyncpg.Pool) -> list[bytes]:
    return [bytes(r["kid"]) for r in await pool.fetch("SELECT kid FROM issuer_keys WHERE status = 'revoked'")]


async def epochs(pool: Executor) -> list[EpochRow]:
    rows = await pool.fetch("SELECT epoch, started_at FROM card_ref_epochs ORDER BY epoch")
    return [EpochRow(**r) for r in rows]


async def start_epoch(conn: Conn, at: datetime, actor: str) -> int:
    """The next card-reference epoch (the first is 1: epoch 0 is the one before any was started)."""
    epoch: int = await conn.fetchval(
        "INSERT INTO card_ref_epochs (epoch, started_at, started_by)"
        " SELECT coalesce(max(epoch), 0) + 1, $1, $2 FROM card_ref_epochs RETURNING epoch",
        at,
        actor,
    )
    return epoch


# --- Redis: revocation flags, read on every verification and every code issued -----------------------


async def flag_revoked(redis: aioredis.Redis, flags: list[str]) -> None:
    """Set the flags (every copy of each: they lie in many slots, so one SET each, batched per node)."""
    if flags:
        async with redis.pipeline(transaction=False) as pipe:
            for flag in flags:
                pipe.set(flag, b"1")
            await pipe.execute()


async def any_flagged(redis: aioredis.Redis, flags: list[str]) -> bool:
    """`flags` all carry one hash tag, so that one EXISTS reads them from one slot."""
    return bool(flags) and await redis.exists(*flags) > 0


async def claim_nonce_and_read_flags(
    redis: aioredis.Redis, nonce: NonceClaim | None, flags: list[str], token: bytes
) -> tuple[bool, bool]:
    """(nonce fresh, a flag set): the request's deferred nonce and the revocation flags in one round trip.

    On a cluster they lie in two slots (the client key's and the flags' shard): a node that fails leaves the
    nonce given back, as if the request never came."""
    parts: list[cache.Part] = []
    if nonce is not None:
        parts.append(lambda pipe: cache.queue_claim(pipe, nonce.key, token, ex=nonce.ttl_s))
    if flags:
        parts.append(lambda pipe: pipe.exists(*flags))
    try:
        answers = await cache.execute_settled(redis, parts)
    except aioredis.RedisError:
        if nonce is not None:
            await cache.release(redis, [nonce.key], token)
        raise
    fresh = cache.won(answers[0][0], token) if nonce is not None else True
    return fresh, bool(flags) and answers[-1][0] > 0


# --- numeric codes: each device's sealed TOTP secret, the live codes' records, wrong-guess counters ----------


async def totp_secret(pool: Executor, device_id: str) -> bytes | None:
    sealed: bytes | None = await pool.fetchval(
        "SELECT secret_sealed FROM device_totp_secrets WHERE device_id = $1", device_id
    )
    return sealed


async def insert_totp_secret(pool: Executor, device_id: str, sealed: bytes) -> None:
    await pool.execute(
        "INSERT INTO device_totp_secrets (device_id, secret_sealed) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        device_id,
        sealed,
    )


async def claim_nonce(redis: aioredis.Redis, nonce: NonceClaim | None, token: bytes) -> bool:
    """True when the request's deferred nonce (if any) had not been claimed before."""
    return nonce is None or await cache.claim(redis, nonce.key, token, ex=nonce.ttl_s)


async def put_numeric(redis: aioredis.Redis, key: str, record: bytes, keep_until_ms: int) -> bool:
    """Takes a free handle for a new code's record; False when the handle is taken."""
    return bool(await redis.set(key, record, nx=True, pxat=keep_until_ms))


async def read_numeric(redis: aioredis.Redis, guess_key: str, record_key: str) -> tuple[int, bytes | None]:
    """(wrong guesses so far in the window, the record the handle names) in one round trip."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.get(guess_key)
        pipe.get(record_key)
        guesses, record = await pipe.execute()
    return int(guesses or 0), record


async def count_guess(redis: aioredis.Redis, guess_key: str, ttl_s: int) -> None:
    async with redis.pipeline(transaction=True) as pipe:
        pipe.incr(guess_key)
        pipe.expire(guess_key, ttl_s)
        await pipe.execute()
