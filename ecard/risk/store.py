"""SQL for risk events, and the rules' Redis windows (every key of one step carries one hash tag: one slot)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from ecard.kit.infra import Conn
from ecard.risk.models import EventRow

# the columns of an EventRow, in its order, in every query that answers one
_EVENTS = """
SELECT public_id, kind, severity, card_id, merchant_id, detail, raised_at, status, action, outcome, note,
       resolved_by, resolved_at
FROM risk_events
WHERE ($1::text IS NULL OR kind = $1) AND ($2::text IS NULL OR card_id = $2) AND ($3::text IS NULL OR status = $3)
ORDER BY raised_at DESC, event_id DESC LIMIT $4
"""
_EVENT_FOR_UPDATE = """
SELECT public_id, kind, severity, card_id, merchant_id, detail, raised_at, status, action, outcome, note,
       resolved_by, resolved_at
FROM risk_events WHERE public_id = $1 FOR UPDATE
"""
_RESOLVE = """
UPDATE risk_events SET status = 'resolved', outcome = $2, note = $3, resolved_by = $4, resolved_at = $5
WHERE public_id = $1
RETURNING public_id, kind, severity, card_id, merchant_id, detail, raised_at, status, action, outcome, note,
          resolved_by, resolved_at
"""


async def insert_event(
    pool: asyncpg.Pool,
    public_id: str,
    kind: str,
    severity: str,
    card_id: str | None,
    merchant_id: str | None,
    detail: dict[str, Any],
    raised_at: datetime,
) -> None:
    await pool.execute(
        "INSERT INTO risk_events (public_id, kind, severity, card_id, merchant_id, detail, raised_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7)",
        public_id,
        kind,
        severity,
        card_id,
        merchant_id,
        detail,
        raised_at,
    )


async def set_action(pool: asyncpg.Pool, public_id: str, action: str) -> None:
    await pool.execute("UPDATE risk_events SET action = $2 WHERE public_id = $1", public_id, action)


async def events(
    pool: asyncpg.Pool, kind: str | None, card_id: str | None, status: str | None, limit: int
) -> list[EventRow]:
    """Newest first, each filter applied only when given."""
    rows = await pool.fetch(
        _EVENTS,
        kind,
        card_id,
        status,
        limit,
    )
    return [EventRow(**row) for row in rows]


async def event_for_update(conn: Conn, public_id: str) -> EventRow | None:
    row = await conn.fetchrow(_EVENT_FOR_UPDATE, public_id)
    return EventRow(**row) if row else None


async def resolve(conn: Conn, public_id: str, outcome: str, note: str, operator: str, at: datetime) -> EventRow:
    row = await conn.fetchrow(
        _RESOLVE,
        public_id,
        outcome,
        note,
        operator,
        at,
    )
    assert row is not None  # the caller holds the row's lock
    return EventRow(**row)


# --- Redis windows ---------------------------------------------------------------------------------


def card_key(prefix: str, card_id: str, rule: str) -> str:
    return f"{prefix}risk:{{{card_id}}}:{rule}"


def merchant_key(prefix: str, merchant_id: str, rule: str) -> str:
    return f"{prefix}risk:{{{merchant_id}}}:{rule}"


async def count_in_window(redis: aioredis.Redis, key: str, member: str, at: float, window_s: float) -> int:
    """Add `member` at `at` to the window `key` holds and answer how many distinct members the last `window_s`
    seconds hold, in one transaction on one key."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.zadd(key, {member: at})
        pipe.zremrangebyscore(key, "-inf", at - window_s)
        pipe.zcard(key)
        pipe.expire(key, int(window_s) + 60)
        _, _, count, _ = await pipe.execute()
    return int(count)


# One verification of a card, atomic on the card's slot (both keys carry its hash tag): its count in the velocity
# window, and (when it was at a registered place) the place before it, which this one replaces.
# KEYS: velocity window, last place. ARGV: member, at, window start, window ttl, lat, lon ('' for no place).
_CARD_STEP = """
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
local count = redis.call('ZCARD', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[4])
if ARGV[5] == '' then
  return {count}
end
local before = redis.call('HMGET', KEYS[2], 'lat', 'lon', 'at')
redis.call('HSET', KEYS[2], 'lat', ARGV[5], 'lon', ARGV[6], 'at', ARGV[2])
redis.call('EXPIRE', KEYS[2], 86400)
return {count, before}
"""


@dataclass(frozen=True)
class CardStep:
    """One accepted verification of a card for the velocity and travel rules."""

    velocity_key: str
    place_key: str
    member: str
    at: float
    window_s: float
    place: tuple[float, float] | None


async def card_steps(
    redis: aioredis.Redis, steps: list[CardStep]
) -> list[tuple[int, tuple[float, float, float] | None]]:
    """Each step's (count in the window, the place before it as (lat, lon, at)), all in one round trip; each step
    is one script on its card's slot, so concurrent workers never interleave within a card."""
    async with redis.pipeline(transaction=False) as pipe:
        for step in steps:
            lat, lon = (repr(step.place[0]), repr(step.place[1])) if step.place is not None else ("", "")
            pipe.eval(
                _CARD_STEP,
                2,
                step.velocity_key,
                step.place_key,
                step.member,
                repr(step.at),
                repr(step.at - step.window_s),
                int(step.window_s) + 60,
                lat,
                lon,
            )
        answers = await pipe.execute()
    found: list[tuple[int, tuple[float, float, float] | None]] = []
    for answer in answers:
        before = answer[1] if len(answer) > 1 else None
        if not before or before[0] is None:
            found.append((int(answer[0]), None))
        else:
            found.append((int(answer[0]), (float(before[0]), float(before[1]), float(before[2]))))
    return found


async def first_claim(redis: aioredis.Redis, key: str, ttl_s: int) -> bool:
    """True for the first caller to claim `key` (across every worker) until it expires."""
    return bool(await redis.set(key, b"1", nx=True, ex=max(ttl_s, 1)))
