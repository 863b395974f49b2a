"""SQL for merchants, their entitlements, and channels."""

from __future__ import annotations

from typing import Any

from ecard.kit.infra import Conn, Executor


async def insert_merchant(conn: Conn, merchant_id: str, name: str, region: str) -> None:
    await conn.execute(
        "INSERT INTO merchants (merchant_id, name, region) VALUES ($1, $2, $3)", merchant_id, name, region
    )


async def set_items(conn: Conn, merchant_id: str, items: list[str]) -> None:
    await conn.execute("DELETE FROM merchant_items WHERE merchant_id = $1", merchant_id)
    await conn.executemany(
        "INSERT INTO merchant_items (merchant_id, item_code) VALUES ($1, $2)",
        [(merchant_id, i) for i in items],
    )


async def merchant(pool: Executor, merchant_id: str) -> dict[str, Any] | None:
    row = await pool.fetchrow(
        "SELECT m.merchant_id, m.name, m.region, m.status,"
        " COALESCE(array_agg(mi.item_code ORDER BY mi.item_code) FILTER (WHERE mi.item_code IS NOT NULL), '{}')"
        " AS items"
        " FROM merchants m LEFT JOIN merchant_items mi USING (merchant_id) WHERE m.merchant_id = $1"
        " GROUP BY m.merchant_id",
        merchant_id,
    )
    return dict(row) if row else None


async def set_merchant_status(conn: Conn, merchant_id: str, status: str) -> bool:
    done: str = await conn.execute("UPDATE merchants SET status = $2 WHERE merchant_id = $1", merchant_id, status)
    return done.endswith(" 1")


async def insert_channel(conn: Conn, channel_id: str, name: str) -> None:
    await conn.execute("INSERT INTO channels (channel_id, name) VALUES ($1, $2)", channel_id, name)


async def set_channel_status(conn: Conn, channel_id: str, status: str) -> bool:
    done: str = await conn.execute("UPDATE channels SET status = $2 WHERE channel_id = $1", channel_id, status)
    return done.endswith(" 1")
