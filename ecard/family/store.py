"""SQL for family links, and the Redis counter of a guardian's failed matches."""

from __future__ import annotations

from datetime import datetime

import redis.asyncio as aioredis

from ecard.family.models import LinkRow
from ecard.kit.infra import Conn, Executor

_COLUMNS = (
    "link_id, guardian_card_id, member_card_id, relation, status, minor, created_at, consented_at, ended_at, ended_by"
)


async def lock_guardian(conn: Conn, guardian_card_id: str) -> None:
    """A guardian's link changes take turns, so that two adds at once cannot both pass a limit."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('family:' || $1, 0))", guardian_card_id)


async def live_counts(conn: Executor, guardian_card_id: str) -> dict[str, int]:
    rows = await conn.fetch(
        "SELECT relation, count(*) AS n FROM family_links WHERE guardian_card_id = $1 AND status <> 'ended'"
        " GROUP BY relation",
        guardian_card_id,
    )
    return {r["relation"]: int(r["n"]) for r in rows}


async def insert_link(conn: Conn, row: LinkRow) -> bool:
    """False when a live link between the two cards exists already."""
    inserted = await conn.fetchrow(
        f"INSERT INTO family_links ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"  # noqa: S608 - fixed columns
        " ON CONFLICT DO NOTHING RETURNING link_id",
        row.link_id,
        row.guardian_card_id,
        row.member_card_id,
        row.relation,
        row.status,
        row.minor,
        row.created_at,
        row.consented_at,
        row.ended_at,
        row.ended_by,
    )
    return inserted is not None


async def link(conn: Executor, link_id: str, *, for_update: bool = False) -> LinkRow | None:
    lock = " FOR UPDATE" if for_update else ""
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM family_links WHERE link_id = $1{lock}", link_id)  # noqa: S608
    return LinkRow(**row) if row else None


async def newest_link(conn: Executor, guardian_card_id: str, member_card_id: str) -> LinkRow | None:
    """The newest link between a guardian and a member: the live one if there is one (ended ones are older)."""
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM family_links WHERE guardian_card_id = $1 AND member_card_id = $2"  # noqa: S608
        " ORDER BY status <> 'ended' DESC, created_at DESC LIMIT 1",
        guardian_card_id,
        member_card_id,
    )
    return LinkRow(**row) if row else None


async def links_of_guardian(conn: Executor, guardian_card_id: str, limit: int) -> list[LinkRow]:
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM family_links WHERE guardian_card_id = $1 ORDER BY created_at DESC LIMIT $2",  # noqa: S608
        guardian_card_id,
        limit,
    )
    return [LinkRow(**r) for r in rows]


async def links_of_member(conn: Executor, member_card_id: str, limit: int) -> list[LinkRow]:
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM family_links WHERE member_card_id = $1 ORDER BY created_at DESC LIMIT $2",  # noqa: S608
        member_card_id,
        limit,
    )
    return [LinkRow(**r) for r in rows]


async def consent(conn: Conn, link_id: str, channel_id: str, at: datetime) -> None:
    await conn.execute(
        "UPDATE family_links SET status = 'active', minor = false, consented_at = $3, consented_by = $2"
        " WHERE link_id = $1",
        link_id,
        channel_id,
        at,
    )


async def lapse(conn: Conn, link_id: str) -> bool:
    """A minor's link whose consent fell due: pending consent from now on. False when another request did it."""
    row = await conn.fetchrow(
        "UPDATE family_links SET status = 'pending_consent', minor = false"
        " WHERE link_id = $1 AND status = 'active' AND minor RETURNING link_id",
        link_id,
    )
    return row is not None


async def end(conn: Conn, link_id: str, by: str, at: datetime) -> None:
    await conn.execute(
        "UPDATE family_links SET status = 'ended', ended_at = $3, ended_by = $2 WHERE link_id = $1",
        link_id,
        by,
        at,
    )


# --- Redis: wrong (ID number, name) pairs a guardian's devices sent, per window ---------------------


async def count_miss(redis: aioredis.Redis, key: str, window_s: int) -> int:
    async with redis.pipeline(transaction=False) as pipe:
        pipe.incr(key)
        pipe.expire(key, window_s, nx=True)
        answers = await pipe.execute()
    return int(answers[0])


async def misses(redis: aioredis.Redis, key: str) -> tuple[int, int]:
    """(misses so far, seconds until the window ends)."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.get(key)
        pipe.ttl(key)
        count, ttl = await pipe.execute()
    return int(count or 0), max(int(ttl), 1)
