"""SQL and Redis of the hot path: one round trip reads the card's status and records the verification if it
stands; the holder's view of the card's verifications."""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from ecard.kit.principal import NonceClaim
from ecard.verify.models import RecordedCard, VerificationRow

# The card's status is read in the same statement that records the verification, so a status change
# committed before it is always seen, on every worker. This is the one place where this room reads the cards
# room's tables (cards, cardholders): a call to that room first would be a second round trip, and a status
# change could commit between the two. The statement only reads them.
# Likewise the family link a guardian's code names ($13, the code's second id read as a link id; the holder's own
# codes name a device, which no link has as its id): a link ended before is always seen.
_RECORD = """
WITH card AS (
    SELECT c.card_id, c.status, c.region, h.cardholder_id, h.name_sealed, h.id_sealed
    FROM cards c JOIN cardholders h USING (cardholder_id)
    WHERE c.card_id = $1
), link AS (
    SELECT relation, status FROM family_links WHERE link_id = $13 AND member_card_id = $1
), recorded AS (
    INSERT INTO verifications (verification_id, card_id, merchant_id, item_code, terminal_id, place, disclosed, cti,
                               verified_at, via_issuer, merchant_name, family_relation)
    SELECT $2, card.card_id, $3, $4, $5, $6, $7, $8, $9, $11, $12, (SELECT relation FROM link)
    FROM card WHERE card.status = 'active' AND $10 AND coalesce((SELECT status FROM link), 'active') = 'active'
    RETURNING verification_id
)
SELECT card.*, (SELECT status FROM link) AS family_status, (SELECT verification_id FROM recorded) AS verification_id
FROM card
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
    family_link: str | None = None,
) -> RecordedCard | None:
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
        family_link,
    )
    return RecordedCard(**row) if row else None


# An offline tap is judged as of its time: the card's status then is the last change made by that moment
# (a card starts active). Recorded with the time of the tap; the unique cti makes every code single use, online
# and offline alike.
_RECORD_AS_OF = """
WITH card AS (
    SELECT c.card_id,
           coalesce((SELECT s.status FROM card_status_changes s WHERE s.card_id = c.card_id AND s.changed_at <= $9
                     ORDER BY s.changed_at DESC, s.change_id DESC LIMIT 1), 'active') AS status,
           c.region, h.cardholder_id, h.name_sealed, h.id_sealed
    FROM cards c JOIN cardholders h USING (cardholder_id)
    WHERE c.card_id = $1
), link AS (
    SELECT relation, status FROM family_links WHERE link_id = $11 AND member_card_id = $1
), recorded AS (
    INSERT INTO verifications (verification_id, card_id, merchant_id, item_code, terminal_id, place, disclosed, cti,
                               verified_at, family_relation)
    SELECT $2, card.card_id, $3, $4, $5, $6, $7, $8, $9, (SELECT relation FROM link)
    FROM card WHERE card.status = 'active' AND $10 AND coalesce((SELECT status FROM link), 'active') = 'active'
    RETURNING verification_id
)
SELECT card.*, (SELECT status FROM link) AS family_status, (SELECT verification_id FROM recorded) AS verification_id
FROM card
"""


async def record_as_of(
    pool: asyncpg.Pool,
    card_id: str,
    verification_id: str,
    merchant_id: str,
    item_code: str,
    terminal_id: str,
    place: dict[str, Any],
    disclosed: list[str],
    cti: bytes,
    at: datetime,
    entitled: bool,
    family_link: str,
) -> RecordedCard | None:
    row = await pool.fetchrow(
        _RECORD_AS_OF,
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
        family_link,
    )
    return RecordedCard(**row) if row else None


async def claim_with_nonce(
    redis: aioredis.Redis, nonce: NonceClaim | None, cti_key: str, expires_at_ms: int
) -> tuple[bool, bool]:
    """(nonce fresh, code fresh): the request's deferred nonce and a numeric code's single-use claim, one trip."""
    async with redis.pipeline(transaction=False) as pipe:
        if nonce is not None:
            pipe.set(nonce.key, b"1", nx=True, ex=nonce.ttl_s)
        pipe.set(cti_key, b"1", nx=True, pxat=expires_at_ms)
        answers = await pipe.execute()
    return (bool(answers[0]) if nonce is not None else True), bool(answers[-1])


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


async def claim_nonce(redis: aioredis.Redis, nonce: NonceClaim | None) -> bool:
    """True when the request's deferred nonce (if any) had not been claimed before."""
    return nonce is None or bool(await redis.set(nonce.key, b"1", nx=True, ex=nonce.ttl_s))


async def claim_code(redis: aioredis.Redis, cti_key: str, ttl_s: int) -> bool:
    """True when this code had not been used before (a linked platform's code, claimed by its hash)."""
    return bool(await redis.set(cti_key, b"1", nx=True, ex=ttl_s))


async def verifications_of_card(pool: asyncpg.Pool, card_id: str, limit: int) -> list[VerificationRow]:
    rows = await pool.fetch(
        "SELECT verification_id, merchant_id, merchant_name, item_code, disclosed, verified_at, terminal_id, place,"
        " via_issuer, family_relation FROM verifications WHERE card_id = $1 ORDER BY verified_at DESC LIMIT $2",
        card_id,
        limit,
    )
    return [VerificationRow(**r) for r in rows]
