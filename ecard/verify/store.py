"""SQL of the hot path: one round trip reads the card's status and records the verification if it stands."""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from ecard.kit.principal import NonceClaim

# The card's status is read in the same statement that records the verification, so a
# status change committed before it is always seen, on every worker.
_RECORD = """
WITH card AS (
    SELECT c.card_id, c.status, c.region, h.cardholder_id, h.name_sealed, h.id_sealed
    FROM cards c JOIN cardholders h USING (cardholder_id)
    WHERE c.card_id = $1
), recorded AS (
    INSERT INTO verifications (verification_id, card_id, merchant_id, item_code, terminal_id, place, disclosed, cti,
                               verified_at, via_issuer, merchant_name)
    SELECT $2, card.card_id, $3, $4, $5, $6, $7, $8, $9, $11, $12 FROM card WHERE card.status = 'active' AND $10
    RETURNING verification_id
)
SELECT card.*, (SELECT verification_id FROM recorded) AS verification_id FROM card
"""


async def record(
    pool: asyncpg.Pool,
    card_id: str,
    verification_id: str,
    merchant_id: str,
    item_code: str,
    terminal_id: str | None,
    place: dict[str, Any] | None,
    disclosed: list[str],
    cti: bytes,
    at: datetime,
    entitled: bool,
    via_issuer: str | None = None,
    merchant_name: str | None = None,
) -> dict[str, Any] | None:
    row = await pool.fetchrow(
        _RECORD,
        card_id,
        verification_id,
        merchant_id,
        item_code,
        terminal_id,
        place,
        disclosed,
        cti,
        at,
        entitled,
        via_issuer,
        merchant_name,
    )
    return dict(row) if row else None


async def claim(
    redis: aioredis.Redis, nonce: NonceClaim | None, revoked_flag: str, cti_key: str, expires_at_ms: int
) -> tuple[bool, bool, bool]:
    """(nonce fresh, key revoked, code fresh): the request's nonce (when the edge deferred it), the
    revocation flag and the code's single-use claim, in one round trip."""
    async with redis.pipeline(transaction=False) as pipe:
        if nonce is not None:
            pipe.set(nonce.key, b"1", nx=True, ex=nonce.ttl_s)
        pipe.exists(revoked_flag)
        pipe.set(cti_key, b"1", nx=True, pxat=expires_at_ms)
        answers = await pipe.execute()
    nonce_fresh = bool(answers[0]) if nonce is not None else True
    return nonce_fresh, bool(answers[-2]), bool(answers[-1])


async def release(redis: aioredis.Redis, cti_key: str) -> None:
    """Give a claimed code back; best effort, since the cache may be the thing that is down."""
    with contextlib.suppress(aioredis.RedisError):
        await redis.delete(cti_key)
