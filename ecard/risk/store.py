"""SQL for risk events, and the rules' Redis windows (every key of one step carries one hash tag: one slot)."""

from __future__ import annotations

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


async def card_step(
    redis: aioredis.Redis,
    velocity_key: str,
    place_key: str,
    member: str,
    at: float,
    window_s: float,
    place: tuple[float, float] | None,
) -> tuple[int, tuple[float, float, float] | None]:
    """One verification of a card, in one transaction on the card's slot: its count in the velocity window, and
    (when it was at a registered place) the place before it (lat, lon, at), which this one replaces."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.zadd(velocity_key, {member: at})
        pipe.zremrangebyscore(velocity_key, "-inf", at - window_s)
        pipe.zcard(velocity_key)
        pipe.expire(velocity_key, int(window_s) + 60)
        if place is not None:
            pipe.hgetall(place_key)
            # a journey longer than a day is never impossible at any speed worth a setting
            pipe.hset(place_key, mapping={"lat": repr(place[0]), "lon": repr(place[1]), "at": repr(at)})
            pipe.expire(place_key, 86_400)
        answers = await pipe.execute()
    before = answers[4] if place is not None else None
    if not before:
        return int(answers[2]), None
    return int(answers[2]), (float(before[b"lat"]), float(before[b"lon"]), float(before[b"at"]))


async def first_claim(redis: aioredis.Redis, key: str, ttl_s: int) -> bool:
    """True for the first caller to claim `key` (across every worker) until it expires."""
    return bool(await redis.set(key, b"1", nx=True, ex=max(ttl_s, 1)))
