"""SQL for merchants, their entitlements, terminals and places, and channels."""

from __future__ import annotations

import msgspec

from ecard.kit.infra import Conn, Executor


class MerchantRow(msgspec.Struct, frozen=True):
    merchant_id: str
    name: str
    region: str
    status: str
    functions: list[str]
    items: list[str]


class LockedMerchant(msgspec.Struct, frozen=True):
    """What a change to a merchant's entitlements or terminals needs to know, read under its row lock."""

    merchant_id: str
    status: str
    functions: list[str]


class TerminalRow(msgspec.Struct, frozen=True):
    terminal_ref: str
    merchant_id: str
    terminal_id: str
    place_name: str
    place_address: str
    region: str
    lat: float
    lon: float
    status: str


class VenueRow(msgspec.Struct, frozen=True):
    """An active terminal of an active merchant (terminal fields set), or an active merchant without terminals."""

    merchant_id: str
    merchant_name: str
    merchant_region: str
    terminal_id: str | None
    place_name: str | None
    place_address: str | None
    region: str | None
    lat: float | None
    lon: float | None
    items: list[str] | None


async def insert_merchant(conn: Conn, merchant_id: str, name: str, region: str, functions: list[str]) -> None:
    await conn.execute(
        "INSERT INTO merchants (merchant_id, name, region, functions) VALUES ($1, $2, $3, $4)",
        merchant_id,
        name,
        region,
        functions,
    )


async def set_functions(conn: Conn, merchant_id: str, functions: list[str]) -> None:
    await conn.execute("UPDATE merchants SET functions = $2 WHERE merchant_id = $1", merchant_id, functions)


async def set_items(conn: Conn, merchant_id: str, items: list[str]) -> None:
    await conn.execute("DELETE FROM merchant_items WHERE merchant_id = $1", merchant_id)
    await conn.executemany(
        "INSERT INTO merchant_items (merchant_id, item_code) VALUES ($1, $2)",
        [(merchant_id, i) for i in items],
    )


async def merchant(pool: Executor, merchant_id: str) -> MerchantRow | None:
    row = await pool.fetchrow(
        "SELECT m.merchant_id, m.name, m.region, m.status, m.functions,"
        " COALESCE(array_agg(mi.item_code ORDER BY mi.item_code) FILTER (WHERE mi.item_code IS NOT NULL), '{}')"
        " AS items"
        " FROM merchants m LEFT JOIN merchant_items mi USING (merchant_id) WHERE m.merchant_id = $1"
        " GROUP BY m.merchant_id",
        merchant_id,
    )
    return msgspec.convert(dict(row), MerchantRow) if row else None


async def merchants_listed(pool: Executor, limit: int) -> list[MerchantRow]:
    rows = await pool.fetch(
        "SELECT m.merchant_id, m.name, m.region, m.status, m.functions,"
        " COALESCE(array_agg(mi.item_code ORDER BY mi.item_code) FILTER (WHERE mi.item_code IS NOT NULL), '{}')"
        " AS items"
        " FROM merchants m LEFT JOIN merchant_items mi USING (merchant_id)"
        " GROUP BY m.merchant_id ORDER BY m.name, m.merchant_id LIMIT $1",
        limit,
    )
    return [msgspec.convert(dict(row), MerchantRow) for row in rows]


async def terminals_of(pool: Executor, merchant_id: str) -> list[TerminalRow]:
    rows = await pool.fetch(
        "SELECT terminal_ref, merchant_id, terminal_id, place_name, place_address, region, lat, lon, status"
        " FROM terminals WHERE merchant_id = $1 ORDER BY terminal_id",
        merchant_id,
    )
    return [msgspec.convert(dict(row), TerminalRow) for row in rows]


async def set_merchant_status(conn: Conn, merchant_id: str, status: str) -> bool:
    done: str = await conn.execute("UPDATE merchants SET status = $2 WHERE merchant_id = $1", merchant_id, status)
    return done.endswith(" 1")


async def insert_channel(conn: Conn, channel_id: str, name: str) -> None:
    await conn.execute("INSERT INTO channels (channel_id, name) VALUES ($1, $2)", channel_id, name)


async def set_channel_status(conn: Conn, channel_id: str, status: str) -> bool:
    done: str = await conn.execute("UPDATE channels SET status = $2 WHERE channel_id = $1", channel_id, status)
    return done.endswith(" 1")


async def merchant_share_locked(conn: Conn, merchant_id: str) -> MerchantRow | None:
    """The merchant with its items, its row share-locked until the transaction ends (changes to it wait)."""
    if await conn.fetchval("SELECT 1 FROM merchants WHERE merchant_id = $1 FOR SHARE", merchant_id) is None:
        return None
    return await merchant(conn, merchant_id)


async def merchant_for_update(conn: Conn, merchant_id: str) -> LockedMerchant | None:
    """The merchant row, locked until the transaction ends, so concurrent changes to it take turns."""
    row = await conn.fetchrow(
        "SELECT merchant_id, status, functions FROM merchants WHERE merchant_id = $1 FOR UPDATE", merchant_id
    )
    return msgspec.convert(dict(row), LockedMerchant) if row else None


async def insert_terminal(
    conn: Conn,
    terminal_ref: str,
    merchant_id: str,
    terminal_id: str,
    place_name: str,
    place_address: str,
    region: str,
    lat: float,
    lon: float,
) -> bool:
    """False when the merchant already has a terminal with this id."""
    done: str = await conn.execute(
        "INSERT INTO terminals (terminal_ref, merchant_id, terminal_id, place_name, place_address, region, lat, lon)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (merchant_id, terminal_id) DO NOTHING",
        terminal_ref,
        merchant_id,
        terminal_id,
        place_name,
        place_address,
        region,
        lat,
        lon,
    )
    return done.endswith(" 1")


async def terminal(pool: Executor, terminal_ref: str) -> TerminalRow | None:
    row = await pool.fetchrow(
        "SELECT terminal_ref, merchant_id, terminal_id, place_name, place_address, region, lat, lon, status"
        " FROM terminals WHERE terminal_ref = $1",
        terminal_ref,
    )
    return msgspec.convert(dict(row), TerminalRow) if row else None


async def set_terminal_status(conn: Conn, merchant_id: str, terminal_id: str, status: str) -> str | None:
    """The terminal's ref, or None when the merchant has no terminal with this id."""
    ref: str | None = await conn.fetchval(
        "UPDATE terminals SET status = $3 WHERE merchant_id = $1 AND terminal_id = $2 RETURNING terminal_ref",
        merchant_id,
        terminal_id,
        status,
    )
    return ref


async def disabled_terminals(conn: Conn, merchant_id: str) -> list[str]:
    rows = await conn.fetch(
        "SELECT terminal_ref FROM terminals WHERE merchant_id = $1 AND status = 'disabled'", merchant_id
    )
    return [r["terminal_ref"] for r in rows]


# Active terminals of active merchants, and active merchants with no terminal at all (they verify
# with their own key, in their own region). A merchant whose terminals are all disabled is nowhere.
_VENUES = """
SELECT m.merchant_id, m.name AS merchant_name, m.region AS merchant_region,
       t.terminal_id, t.place_name, t.place_address, t.region, t.lat, t.lon,
       (SELECT array_agg(mi.item_code ORDER BY mi.item_code) FROM merchant_items mi
        WHERE mi.merchant_id = m.merchant_id) AS items
FROM merchants m
LEFT JOIN terminals t ON t.merchant_id = m.merchant_id AND t.status = 'active'
WHERE m.status = 'active'
  AND (t.terminal_ref IS NOT NULL OR NOT EXISTS (SELECT 1 FROM terminals o WHERE o.merchant_id = m.merchant_id))
  AND ($1::text IS NULL
       OR EXISTS (SELECT 1 FROM merchant_items e WHERE e.merchant_id = m.merchant_id AND e.item_code = $1))
  AND ($2::text IS NULL OR COALESCE(t.region, m.region) = $2)
ORDER BY m.name, m.merchant_id, t.terminal_id NULLS FIRST
"""


async def venues(pool: Executor, item_code: str | None, region: str | None) -> list[VenueRow]:
    return [msgspec.convert(dict(r), VenueRow) for r in await pool.fetch(_VENUES, item_code, region)]


async def payment_items(pool: Executor) -> set[str]:
    """The items that an active merchant taking payments is entitled to."""
    rows = await pool.fetch(
        "SELECT DISTINCT mi.item_code FROM merchant_items mi JOIN merchants m USING (merchant_id)"
        " WHERE m.status = 'active' AND 'payment' = ANY (m.functions)"
    )
    return {r["item_code"] for r in rows}
