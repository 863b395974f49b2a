"""All SQL of complaints, the Redis counters of their throttle, and the read-only checks of what one names."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from ecard.complaints.models import ComplaintRow, ReplyRow
from ecard.kit import audit
from ecard.kit.infra import Conn, Executor

_COMPLAINT_COLUMNS = (
    "complaint_id, tracking_hash, channel, card_id, device_id, category, text_sealed, contact_sealed,"
    " merchant_id, verification_id, bill_id, status, received_at, due_at"
)
_OPEN = ("received", "accepted")


def _complaint(row: asyncpg.Record) -> ComplaintRow:
    return ComplaintRow(
        complaint_id=row["complaint_id"],
        tracking_hash=bytes(row["tracking_hash"]),
        channel=row["channel"],
        card_id=row["card_id"],
        device_id=row["device_id"],
        category=row["category"],
        text_sealed=bytes(row["text_sealed"]),
        contact_sealed=bytes(row["contact_sealed"]) if row["contact_sealed"] is not None else None,
        merchant_id=row["merchant_id"],
        verification_id=row["verification_id"],
        bill_id=row["bill_id"],
        status=row["status"],
        received_at=row["received_at"],
        due_at=row["due_at"],
    )


async def insert_complaint(conn: Conn, row: ComplaintRow, actor: str, detail: dict[str, Any]) -> None:
    """The new complaint and its audit entry, in one transaction."""
    async with conn.transaction():
        await conn.execute(
            f"INSERT INTO complaints ({_COMPLAINT_COLUMNS})"  # noqa: S608 - a constant column list, no values
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
            row.complaint_id,
            row.tracking_hash,
            row.channel,
            row.card_id,
            row.device_id,
            row.category,
            row.text_sealed,
            row.contact_sealed,
            row.merchant_id,
            row.verification_id,
            row.bill_id,
            row.status,
            row.received_at,
            row.due_at,
        )
        await audit.record(conn, actor, "complaint.filed", row.complaint_id, detail)


async def complaint(db: Executor, complaint_id: str, *, for_update: bool = False) -> ComplaintRow | None:
    row = await db.fetchrow(
        f"SELECT {_COMPLAINT_COLUMNS} FROM complaints WHERE complaint_id = $1"  # noqa: S608 - constant columns
        + (" FOR UPDATE" if for_update else ""),
        complaint_id,
    )
    return _complaint(row) if row is not None else None


async def complaints(db: Executor, status: str | None, overdue_at: datetime | None, limit: int) -> list[ComplaintRow]:
    """Complaints by due date (soonest first); with `overdue_at`, only open ones due before it."""
    rows = await db.fetch(
        f"SELECT {_COMPLAINT_COLUMNS} FROM complaints"  # noqa: S608 - constant columns
        " WHERE ($1::text IS NULL OR status = $1)"
        " AND ($2::timestamptz IS NULL OR (due_at < $2 AND status = ANY($3::text[])))"
        " ORDER BY due_at, complaint_id LIMIT $4",
        status,
        overdue_at,
        list(_OPEN),
        limit,
    )
    return [_complaint(row) for row in rows]


async def complaints_of_card(db: Executor, card_id: str, limit: int) -> list[ComplaintRow]:
    rows = await db.fetch(
        f"SELECT {_COMPLAINT_COLUMNS} FROM complaints"  # noqa: S608 - constant columns
        " WHERE card_id = $1 ORDER BY received_at DESC, complaint_id LIMIT $2",
        card_id,
        limit,
    )
    return [_complaint(row) for row in rows]


async def replies(db: Executor, complaint_id: str) -> list[ReplyRow]:
    rows = await db.fetch(
        "SELECT reply_id, complaint_id, operator_id, status, text_sealed, replied_at FROM complaint_replies"
        " WHERE complaint_id = $1 ORDER BY replied_at, reply_id",
        complaint_id,
    )
    return [
        ReplyRow(
            reply_id=r["reply_id"],
            complaint_id=r["complaint_id"],
            operator_id=r["operator_id"],
            status=r["status"],
            text_sealed=bytes(r["text_sealed"]),
            replied_at=r["replied_at"],
        )
        for r in rows
    ]


async def insert_reply(conn: Conn, reply: ReplyRow) -> None:
    await conn.execute(
        "INSERT INTO complaint_replies (reply_id, complaint_id, operator_id, status, text_sealed, replied_at)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        reply.reply_id,
        reply.complaint_id,
        reply.operator_id,
        reply.status,
        reply.text_sealed,
        reply.replied_at,
    )
    await conn.execute("UPDATE complaints SET status = $2 WHERE complaint_id = $1", reply.complaint_id, reply.status)


# --- what a complaint may name: read-only looks at other rooms' records (as the depth report's are) ------------


async def merchant_exists(db: Executor, merchant_id: str) -> bool:
    return bool(await db.fetchval("SELECT EXISTS (SELECT 1 FROM merchants WHERE merchant_id = $1)", merchant_id))


async def merchant_of_card_verification(db: Executor, verification_id: str, card_id: str) -> str | None:
    """The merchant of a verification of this card; None when there is none (or it is another card's)."""
    merchant: str | None = await db.fetchval(
        "SELECT merchant_id FROM verifications WHERE verification_id = $1 AND card_id = $2", verification_id, card_id
    )
    return merchant


async def merchant_of_card_bill(db: Executor, bill_id: str, card_id: str) -> str | None:
    """The merchant of a bill this card paid or tried to pay; None when there is none (or it is another's)."""
    merchant: str | None = await db.fetchval(
        "SELECT b.merchant_id FROM bills b WHERE b.bill_id = $1 AND (b.card_id = $2 OR EXISTS"
        " (SELECT 1 FROM payment_attempts p WHERE p.bill_id = b.bill_id AND p.card_id = $2))",
        bill_id,
        card_id,
    )
    return merchant


# --- Redis: the throttle --------------------------------------------------------------------------


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


async def count_filing(redis: aioredis.Redis, prefix: str, scope: str, subject: str, window: int, ttl_s: int) -> int:
    """Count one filing of `subject` (a source address, a card) in `window`; how many so far, this one included.

    The subject is kept only as a digest in the key's name."""
    name = f"{prefix}complaints:{scope}:{_digest(subject)}:{window}"
    async with redis.pipeline(transaction=True) as pipe:
        pipe.incr(name)
        pipe.expire(name, ttl_s)
        used, _ = await pipe.execute()
    return int(used)
