"""SQL for cardholders, cards and devices."""

from __future__ import annotations

from typing import Any

import asyncpg

from ecard.kit.infra import Conn, Executor


async def holder_by_index(conn: Executor, id_index: bytes) -> dict[str, Any] | None:
    row = await conn.fetchrow("SELECT cardholder_id, name_sealed FROM cardholders WHERE id_index = $1", id_index)
    return dict(row) if row else None


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


async def cards_of_holder(conn: Executor, cardholder_id: str) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT card_id, card_serial, region, status, status_reason, created_at FROM cards"
        " WHERE cardholder_id = $1 ORDER BY created_at DESC",
        cardholder_id,
    )
    return [dict(r) for r in rows]


async def card_for_update(conn: Conn, card_id: str) -> dict[str, Any] | None:
    row = await conn.fetchrow("SELECT card_id, status FROM cards WHERE card_id = $1 FOR UPDATE", card_id)
    return dict(row) if row else None


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


async def set_pin(pool: asyncpg.Pool, device_id: str, pin_hash: str) -> None:
    await pool.execute("UPDATE devices SET pin_hash = $2 WHERE device_id = $1", device_id, pin_hash)


async def device_card(pool: asyncpg.Pool, device_id: str) -> dict[str, Any] | None:
    row = await pool.fetchrow(
        "SELECT d.card_id, d.status AS device_status, c.status AS card_status"
        " FROM devices d JOIN cards c USING (card_id) WHERE d.device_id = $1",
        device_id,
    )
    return dict(row) if row else None


async def device_pin(pool: asyncpg.Pool, device_id: str) -> dict[str, Any] | None:
    row = await pool.fetchrow(
        "SELECT d.card_id, d.status AS device_status, c.status AS card_status, d.pin_hash"
        " FROM devices d JOIN cards c USING (card_id) WHERE d.device_id = $1",
        device_id,
    )
    return dict(row) if row else None
