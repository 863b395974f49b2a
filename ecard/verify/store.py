"""SQL and Redis of the hot path: one round trip reads the card's status and records the verification if it
stands; the holder's view of the card's verifications."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from ecard.kit import cache
from ecard.kit.groupcommit import GroupCommit
from ecard.kit.principal import NonceClaim
from ecard.verify.models import RecordedCard, VerificationRow

# The card's status is read in the same statement that records the verification, so a status change
# committed before it is always seen, on every worker. This is the one place where this room reads the cards
# room's tables (cards, cardholders): a call to that room first would be a second round trip, and a status
# change could commit between the two. The statement only reads them. It records many verifications at once
# (group commit), one row per input by its ordinal `n`.
_RECORD_MANY = """
WITH input AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                         $8::bytea[], $9::timestamptz[], $10::bool[], $11::text[], $12::text[], $13::text[])
        WITH ORDINALITY AS i(card_id, verification_id, merchant_id, item_code, terminal_id, place, disclosed, cti,
                             verified_at, entitled, via_issuer, merchant_name, family_link, n)
), card AS (
    SELECT i.*, c.status, c.region, h.cardholder_id, h.name_sealed, h.id_sealed,
           l.relation AS family_relation, l.status AS family_status
    FROM input i JOIN cards c ON c.card_id = i.card_id JOIN cardholders h ON h.cardholder_id = c.cardholder_id
    LEFT JOIN family_links l ON l.link_id = i.family_link AND l.member_card_id = i.card_id
), recorded AS (
    INSERT INTO verifications (verification_id, card_id, merchant_id, item_code, terminal_id, place, disclosed, cti,
                               verified_at, via_issuer, merchant_name, family_relation)
    SELECT verification_id, card_id, merchant_id, item_code, terminal_id, place::jsonb,
           ARRAY(SELECT e FROM jsonb_array_elements_text(disclosed::jsonb) WITH ORDINALITY AS d(e, k) ORDER BY k),
           cti, verified_at, via_issuer, merchant_name, family_relation
    FROM card WHERE card.status = 'active' AND card.entitled AND coalesce(card.family_status, 'active') = 'active'
    RETURNING verification_id
)
SELECT card.n, card.card_id, card.status, card.region, card.cardholder_id, card.name_sealed, card.id_sealed,
       card.family_status, recorded.verification_id
FROM card LEFT JOIN recorded USING (verification_id)
"""


@dataclass(frozen=True)
class NewRecord:
    """One verification to record (when its card stands), as `record` takes it."""

    card_id: str
    verification_id: str
    merchant_id: str
    item_code: str
    terminal_id: str | None
    place: dict[str, Any] | None
    disclosed: list[str]
    cti: bytes
    at: datetime
    entitled: bool
    via_issuer: str | None
    merchant_name: str | None
    # the family link a guardian's code names (its second id read as a link id); None for the holder's own
    family_link: str | None = None


async def record_many(pool: asyncpg.Pool, records: list[NewRecord]) -> list[RecordedCard | None]:
    """`record` for each of `records` in one statement and one commit; in their order."""
    rows = await pool.fetch(
        _RECORD_MANY,
        [r.card_id for r in records],
        [r.verification_id for r in records],
        [r.merchant_id for r in records],
        [r.item_code for r in records],
        [r.terminal_id for r in records],
        [None if r.place is None else json.dumps(r.place) for r in records],
        [json.dumps(r.disclosed) for r in records],
        [r.cti for r in records],
        [r.at for r in records],
        [r.entitled for r in records],
        [r.via_issuer for r in records],
        [r.merchant_name for r in records],
        [r.family_link for r in records],
    )
    by_n = {int(row["n"]): row for row in rows}
    found = [by_n.get(n) for n in range(1, len(records) + 1)]
    return [None if row is None else RecordedCard(**{k: v for k, v in row.items() if k != "n"}) for row in found]


def verification_records(pool: asyncpg.Pool) -> GroupCommit[NewRecord, RecordedCard | None]:
    """The records of verifications that arrive together, in one statement and one commit (`record_many`)."""
    return GroupCommit(functools.partial(record_many, pool))


def code_claim_key(prefix: str, cti: bytes) -> str:
    """The single-use claim of a code, in the slot of its shard (where its key's revocation flag has a copy)."""
    return f"{prefix}{cache.shard_tag(cti)}:cti:{cti.hex()}"


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
    redis: aioredis.Redis, nonce: NonceClaim | None, cti_key: str, expires_at_ms: int, token: bytes
) -> tuple[bool, bool]:
    """(nonce fresh, code fresh): the request's deferred nonce and a numeric code's single-use claim, one trip.

    As in `claim`, a node that fails mid-way leaves the other's claim given back."""

    def code(pipe: aioredis.client.Pipeline) -> None:
        cache.queue_claim(pipe, cti_key, token, pxat=expires_at_ms)

    nonce_fresh, (code_fresh,) = await _with_nonce(redis, nonce, code, cti_key, token)
    return nonce_fresh, cache.won(code_fresh, token)


async def claim(
    redis: aioredis.Redis,
    nonce: NonceClaim | None,
    revoked_flag: str,
    cti_key: str,
    expires_at_ms: int,
    token: bytes,
) -> tuple[bool, bool, bool]:
    """(nonce fresh, key revoked, code fresh): the request's nonce (when the edge deferred it), the
    revocation flag and the code's single-use claim, in one round trip.

    On a cluster the nonce lives in its client key's slot and the flag and the claim in the code's slot
    (docs/redis-keys.md): a node that fails leaves the other's claims given back, as if the request never came."""

    def code(pipe: aioredis.client.Pipeline) -> None:
        pipe.exists(revoked_flag)
        cache.queue_claim(pipe, cti_key, token, pxat=expires_at_ms)

    nonce_fresh, (revoked, code_fresh) = await _with_nonce(redis, nonce, code, cti_key, token)
    return nonce_fresh, bool(revoked), cache.won(code_fresh, token)


async def _with_nonce(
    redis: aioredis.Redis, nonce: NonceClaim | None, code: cache.Part, cti_key: str, token: bytes
) -> tuple[bool, list[Any]]:
    """(nonce fresh, the code part's answers): the deferred nonce's claim beside the code's part, one round trip
    on one Redis. When a node fails, both claims are given back once both have settled."""
    parts: list[cache.Part] = [code]
    if nonce is not None:
        parts.insert(0, lambda pipe: cache.queue_claim(pipe, nonce.key, token, ex=nonce.ttl_s))
    try:
        answers = await cache.execute_settled(redis, parts)
    except aioredis.RedisError:
        await cache.release(redis, [*([nonce.key] if nonce is not None else []), cti_key], token)
        raise
    return (cache.won(answers[0][0], token) if nonce is not None else True), answers[-1]


async def release(redis: aioredis.Redis, cti_key: str, token: bytes) -> None:
    """Give a claimed code back; best effort, since the cache may be the thing that is down."""
    await cache.release(redis, [cti_key], token)


async def claim_nonce(redis: aioredis.Redis, nonce: NonceClaim | None, token: bytes) -> bool:
    """True when the request's deferred nonce (if any) had not been claimed before."""
    return nonce is None or await cache.claim(redis, nonce.key, token, ex=nonce.ttl_s)


async def claim_code(redis: aioredis.Redis, cti_key: str, ttl_s: int, token: bytes) -> bool:
    """True when this code had not been used before (a linked platform's code, claimed by its hash)."""
    return await cache.claim(redis, cti_key, token, ex=ttl_s)


async def verifications_of_card(pool: asyncpg.Pool, card_id: str, limit: int) -> list[VerificationRow]:
    rows = await pool.fetch(
        "SELECT verification_id, merchant_id, merchant_name, item_code, disclosed, verified_at, terminal_id, place,"
        " via_issuer, family_relation FROM verifications WHERE card_id = $1 ORDER BY verified_at DESC LIMIT $2",
        card_id,
        limit,
    )
    return [VerificationRow(**r) for r in rows]
