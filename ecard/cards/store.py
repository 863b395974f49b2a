"""SQL for cardholders, cards, devices, their PINs and reset grants, and the notices to the holder."""

from __future__ import annotations

from datetime import datetime

import redis.asyncio as aioredis

from ecard.cards.models import (
    CardHolderRow,
    CardLock,
    CardRow,
    DeviceCard,
    DeviceHolder,
    HolderCardRow,
    HolderRow,
    NoticeDetail,
    NoticeRow,
    PinAttempt,
    TicketGrant,
)
from ecard.kit.infra import Conn, Executor


async def holder_by_index(conn: Executor, id_index: bytes) -> HolderRow | None:
    row = await conn.fetchrow("SELECT cardholder_id, name_sealed FROM cardholders WHERE id_index = $1", id_index)
    return HolderRow(**row) if row else None


async def insert_holder(
    conn: Conn,
    cardholder_id: str,
    name_sealed: bytes,
    id_sealed: bytes,
    id_index: bytes,
) -> str:
    """Insert a cardholder, or return the one already holding this ID number."""
    existing: str | None = await conn.fetchval(
        "INSERT INTO cardholders (cardholder_id, name_sealed, id_sealed, id_index)"
        " VALUES ($1, $2, $3, $4) ON CONFLICT (id_index) DO NOTHING RETURNING cardholder_id",
        cardholder_id,
        name_sealed,
        id_sealed,
        id_index,
    )
    if existing is not None:
        return existing
    found: str = await conn.fetchval("SELECT cardholder_id FROM cardholders WHERE id_index = $1", id_index)
    return found


async def insert_card(conn: Conn, card_id: str, cardholder_id: str, card_serial: str, region: str) -> bool:
    row = await conn.fetchrow(
        "INSERT INTO cards (card_id, cardholder_id, card_serial, region) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (card_serial) DO NOTHING RETURNING card_id",
        card_id,
        cardholder_id,
        card_serial,
        region,
    )
    return row is not None


async def holder_cards_by_indexes(conn: Executor, id_indexes: list[bytes]) -> list[HolderCardRow]:
    """The cards of every cardholder whose ID number has one of these blind indexes, each holder's newest first."""
    rows = await conn.fetch(
        "SELECT h.id_index, h.cardholder_id, h.name_sealed, c.card_id, c.status FROM cardholders h"
        " JOIN cards c ON c.cardholder_id = h.cardholder_id WHERE h.id_index = ANY($1::bytea[])"
        " ORDER BY h.cardholder_id, c.created_at DESC",
        id_indexes,
    )
    return [HolderCardRow(**r) for r in rows]


async def cards_of_holder(conn: Executor, cardholder_id: str) -> list[CardRow]:
    rows = await conn.fetch(
        "SELECT card_id, card_serial, region, status, status_reason FROM cards"
        " WHERE cardholder_id = $1 ORDER BY created_at DESC",
        cardholder_id,
    )
    return [CardRow(**r) for r in rows]


async def card_for_update(conn: Conn, card_id: str) -> CardLock | None:
    row = await conn.fetchrow("SELECT card_id, status FROM cards WHERE card_id = $1 FOR UPDATE", card_id)
    return CardLock(**row) if row else None


async def card_reason_for_update(conn: Conn, card_id: str) -> tuple[str, str] | None:
    """The card's status and the reason it was given, locked for the caller's transaction."""
    row = await conn.fetchrow("SELECT status, status_reason FROM cards WHERE card_id = $1 FOR UPDATE", card_id)
    return (row["status"], row["status_reason"] or "") if row else None


async def set_status(conn: Conn, card_id: str, status: str, reason: str, actor: str) -> None:
    await conn.execute(
        "UPDATE cards SET status = $2, status_reason = $3, status_at = now() WHERE card_id = $1",
        card_id,
        status,
        reason,
    )
    await conn.execute(
        "INSERT INTO card_status_changes (card_id, status, reason, actor) VALUES ($1, $2, $3, $4)",
        card_id,
        status,
        reason,
        actor,
    )


async def active_device_keys(conn: Conn, card_id: str) -> list[str]:
    rows = await conn.fetch("SELECT device_id FROM devices WHERE card_id = $1 AND status = 'active'", card_id)
    return [r["device_id"] for r in rows]


async def revoke_devices(conn: Conn, card_id: str) -> None:
    await conn.execute("UPDATE devices SET status = 'revoked' WHERE card_id = $1 AND status = 'active'", card_id)


async def insert_device(conn: Conn, device_id: str, card_id: str, channel_id: str, key_id: str, name: str) -> None:
    await conn.execute(
        "INSERT INTO devices (device_id, card_id, channel_id, key_id, name) VALUES ($1, $2, $3, $4, $5)",
        device_id,
        card_id,
        channel_id,
        key_id,
        name,
    )


_DEVICE_CARD = (
    "SELECT d.device_id, d.card_id, d.status AS device_status, c.status AS card_status, d.pin_hash, d.pin_pepper"
    " FROM devices d JOIN cards c USING (card_id) WHERE d.device_id = $1"
)


async def device_card(conn: Executor, device_id: str) -> DeviceCard | None:
    row = await conn.fetchrow(_DEVICE_CARD, device_id)
    return DeviceCard(**row) if row else None


async def device_holder(conn: Executor, device_id: str) -> DeviceHolder | None:
    row = await conn.fetchrow(
        "SELECT d.device_id, d.card_id, d.status AS device_status, c.status AS card_status, h.cardholder_id,"
        " h.name_sealed, h.id_index"
        " FROM devices d JOIN cards c USING (card_id) JOIN cardholders h USING (cardholder_id)"
        " WHERE d.device_id = $1",
        device_id,
    )
    return DeviceHolder(**row) if row else None


async def set_pin(
    conn: Conn, device_id: str, pin_hash: str, pin_pepper: int, *, expected_hash: str | None, first: bool
) -> bool:
    """Store a PIN hash on an active device of an active card; False when that no longer holds, or when the
    device's hash is no longer the one the caller checked against (`first`: that it has none)."""
    row = await conn.fetchrow(
        "UPDATE devices d SET pin_hash = $2, pin_pepper = $3 FROM cards c"
        " WHERE d.device_id = $1 AND c.card_id = d.card_id AND d.status = 'active' AND c.status = 'active'"
        " AND (CASE WHEN $5 THEN d.pin_hash IS NULL ELSE d.pin_hash = $4 END)"
        " RETURNING d.device_id",
        device_id,
        pin_hash,
        pin_pepper,
        expected_hash,
        first,
    )
    return row is not None


async def rehash_pin(conn: Conn, device_id: str, old_hash: str, pin_hash: str, pin_pepper: int) -> None:
    """Replace a PIN hash with a stronger one of the same PIN, unless the PIN changed meanwhile."""
    await conn.execute(
        "UPDATE devices SET pin_hash = $3, pin_pepper = $4 WHERE device_id = $1 AND pin_hash = $2",
        device_id,
        old_hash,
        pin_hash,
        pin_pepper,
    )


# One statement counts the attempt (unless the card is locked) and reads the hash to check it against, so that
# concurrent checks each see their own count and none can slip past the limit. A lock that has run out is
# lifted by the attempt that finds it, which counts as the first of a new series.
_COUNT_ATTEMPT = """
WITH counted AS (
    INSERT INTO pin_guards AS g (card_id, failures) VALUES ($1, 1)
    ON CONFLICT (card_id) DO UPDATE SET
        failures = CASE
            WHEN g.locked_until > $3 THEN g.failures
            WHEN g.locked_until IS NOT NULL THEN 1
            ELSE g.failures + 1
        END,
        locked_until = CASE WHEN g.locked_until > $3 THEN g.locked_until END
    RETURNING g.failures, g.locked_until
)
SELECT counted.failures, counted.locked_until, d.pin_hash, d.pin_pepper
FROM counted, devices d WHERE d.device_id = $2
"""


async def count_pin_attempt(conn: Executor, card_id: str, device_id: str, now: datetime) -> PinAttempt | None:
    row = await conn.fetchrow(_COUNT_ATTEMPT, card_id, device_id, now)
    return PinAttempt(**row) if row else None


async def give_back_pin_attempt(conn: Executor, card_id: str) -> None:
    """Uncount an attempt that was never checked (the hashing lane was full)."""
    await conn.execute(
        "UPDATE pin_guards SET failures = greatest(failures - 1, 0) WHERE card_id = $1 AND locked_until IS NULL",
        card_id,
    )


async def pin_guard(conn: Executor, card_id: str) -> tuple[int, datetime | None]:
    """The card's wrong-PIN count and lock (none yet: 0 and None)."""
    row = await conn.fetchrow("SELECT failures, locked_until FROM pin_guards WHERE card_id = $1", card_id)
    return (int(row["failures"]), row["locked_until"]) if row else (0, None)


async def clear_pin_failures(conn: Executor, card_id: str) -> None:
    await conn.execute("UPDATE pin_guards SET failures = 0, locked_until = NULL WHERE card_id = $1", card_id)


async def lock_pins(conn: Executor, card_id: str, until: datetime) -> bool:
    """Lock the card's PIN until `until`, unless it is locked already; True when this locked it."""
    row = await conn.fetchrow(
        "UPDATE pin_guards SET locked_until = $2 WHERE card_id = $1 AND locked_until IS NULL RETURNING card_id",
        card_id,
        until,
    )
    return row is not None


async def hold_pins(conn: Executor, card_id: str, failures: int, until: datetime) -> None:
    """Lock the card's PIN until `until` whatever its count (a hold that only a channel's reset lifts)."""
    await conn.execute(
        "INSERT INTO pin_guards AS g (card_id, failures, locked_until) VALUES ($1, $2, $3)"
        " ON CONFLICT (card_id) DO UPDATE SET failures = $2, locked_until = $3",
        card_id,
        failures,
        until,
    )


async def insert_reset(
    conn: Conn, token_hash: bytes, device_id: str, channel_id: str, at: datetime, expires_at: datetime
) -> None:
    """A new reset grant for the device; any grant it still had open is spent, so only the newest works."""
    await conn.execute(
        "UPDATE pin_resets SET used_at = $2 WHERE device_id = $1 AND used_at IS NULL",
        device_id,
        at,
    )
    await conn.execute(
        "INSERT INTO pin_resets (token_hash, device_id, channel_id, created_at, expires_at)"
        " VALUES ($1, $2, $3, $4, $5)",
        token_hash,
        device_id,
        channel_id,
        at,
        expires_at,
    )


async def spend_reset(conn: Conn, token_hash: bytes, at: datetime) -> tuple[str, str] | None:
    """Spend an open, unexpired grant, whoever presents it: (device it was made for, channel that made it)."""
    row = await conn.fetchrow(
        "UPDATE pin_resets SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2"
        " RETURNING device_id, channel_id",
        token_hash,
        at,
    )
    return (row["device_id"], row["channel_id"]) if row else None


async def insert_notice(
    conn: Executor, notice_id: str, card_id: str, kind: str, detail: NoticeDetail, at: datetime
) -> None:
    await conn.execute(
        "INSERT INTO notices (notice_id, card_id, kind, detail, created_at) VALUES ($1, $2, $3, $4, $5)",
        notice_id,
        card_id,
        kind,
        detail,
        at,
    )


async def notices_of_card(conn: Executor, card_id: str, limit: int) -> list[NoticeRow]:
    rows = await conn.fetch(
        "SELECT notice_id, kind, detail, created_at FROM notices WHERE card_id = $1"
        " ORDER BY created_at DESC, seq DESC LIMIT $2",
        card_id,
        limit,
    )
    return [NoticeRow(**r) for r in rows]


async def holder_of_card(conn: Executor, card_id: str) -> CardHolderRow | None:
    row = await conn.fetchrow(
        "SELECT c.card_id, c.status, c.region, h.cardholder_id, h.name_sealed, h.id_sealed, h.id_index"
        " FROM cards c JOIN cardholders h USING (cardholder_id) WHERE c.card_id = $1",
        card_id,
    )
    if row is None:
        return None
    return CardHolderRow(
        card_id=row["card_id"],
        status=row["status"],
        region=row["region"],
        cardholder_id=row["cardholder_id"],
        name_sealed=bytes(row["name_sealed"]),
        id_sealed=bytes(row["id_sealed"]),
        id_index=bytes(row["id_index"]),
    )


# --- enrolment tickets (Redis) -------------------------------------------------------------------------------
# A ticket is kept only as its SHA-256, one key each, hash-tagged by that digest (docs/redis-keys.md).


def _ticket_key(prefix: str, digest: bytes) -> str:
    return f"{prefix}ticket:{{{digest.hex()}}}"


async def put_ticket(redis: aioredis.Redis, prefix: str, digest: bytes, grant: TicketGrant, ttl_s: int) -> None:
    value = f"{grant.card_id} {grant.channel_id} {grant.expires_at}"
    await redis.set(_ticket_key(prefix, digest), value, ex=ttl_s)


async def take_ticket(redis: aioredis.Redis, prefix: str, digest: bytes) -> TicketGrant | None:
    """The ticket's grant, gone from Redis in the same step (GETDEL): a ticket is used once."""
    raw = await redis.getdel(_ticket_key(prefix, digest))
    if raw is None:
        return None
    card_id, channel_id, expires_at = (raw.decode() if isinstance(raw, bytes) else str(raw)).split(" ")
    return TicketGrant(card_id=card_id, channel_id=channel_id, expires_at=float(expires_at))


async def count_redeem(redis: aioredis.Redis, prefix: str, source_digest: bytes, window: int, ttl_s: int) -> int:
    """Count one ticketed enrolment from a source address in `window`; how many so far, this one included."""
    name = f"{prefix}ticket-redeem:{{{source_digest.hex()}}}:{window}"
    async with redis.pipeline(transaction=True) as pipe:
        pipe.incr(name)
        pipe.expire(name, ttl_s)
        used, _ = await pipe.execute()
    return int(used)
