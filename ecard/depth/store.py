"""SQL for depth of use: recorded scenes and beneficiaries, and the venues that accepted the card."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ecard.kit.infra import Conn, Executor


async def set_scenes(conn: Conn, item_code: str, district: str, scenes: int) -> None:
    await conn.execute(
        "INSERT INTO depth_scenes (item_code, district, scenes) VALUES ($1, $2, $3)"
        " ON CONFLICT (item_code, district) DO UPDATE SET scenes = EXCLUDED.scenes, updated_at = now()",
        item_code,
        district,
        scenes,
    )


async def set_beneficiaries(conn: Conn, item_code: str, year: int, beneficiaries: int, paid_by_card: int) -> None:
    await conn.execute(
        "INSERT INTO depth_beneficiaries (item_code, year, beneficiaries, paid_by_card) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (item_code, year) DO UPDATE"
        " SET beneficiaries = EXCLUDED.beneficiaries, paid_by_card = EXCLUDED.paid_by_card, updated_at = now()",
        item_code,
        year,
        beneficiaries,
        paid_by_card,
    )


async def scenes(pool: Executor) -> list[dict[str, Any]]:
    rows = await pool.fetch("SELECT item_code, district, scenes FROM depth_scenes")
    return [dict(r) for r in rows]


async def beneficiaries(pool: Executor, year: int) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        "SELECT item_code, year, beneficiaries, paid_by_card FROM depth_beneficiaries WHERE year = $1", year
    )
    return [dict(r) for r in rows]


# A venue is a registered terminal, in the district of its place, or a merchant that has no terminals,
# in its own region. A verification from a merchant that has terminals but names none of them is
# no venue's: there is no telling where it happened. Every recorded verification was accepted.
_ACCEPTING = """
SELECT v.item_code, COALESCE(t.region, m.region) AS district,
       count(DISTINCT COALESCE(t.terminal_ref, m.merchant_id)) AS venues
FROM verifications v
JOIN merchants m ON m.merchant_id = v.merchant_id
LEFT JOIN terminals t ON t.merchant_id = v.merchant_id AND t.terminal_id = v.terminal_id
WHERE v.verified_at >= $1 AND v.verified_at < $2
  AND (t.terminal_ref IS NOT NULL OR NOT EXISTS (SELECT 1 FROM terminals o WHERE o.merchant_id = v.merchant_id))
GROUP BY 1, 2
"""


async def accepting_venues(pool: Executor, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """(item_code, district, venues): how many venues accepted the card for the item in [start, end)."""
    return [dict(r) for r in await pool.fetch(_ACCEPTING, start, end)]


async def payment_items(pool: Executor) -> set[str]:
    """The items that an active merchant taking payments is entitled to."""
    rows = await pool.fetch(
        "SELECT DISTINCT mi.item_code FROM merchant_items mi JOIN merchants m USING (merchant_id)"
        " WHERE m.status = 'active' AND 'payment' = ANY (m.functions)"
    )
    return {r["item_code"] for r in rows}


async def paid_bill_items(pool: Executor, start: datetime, end: datetime) -> set[str]:
    """The items of bills that were paid (pulled up by a merchant, paid with the card) in [start, end)."""
    rows = await pool.fetch("SELECT DISTINCT item_code FROM bills WHERE paid_at >= $1 AND paid_at < $2", start, end)
    return {r["item_code"] for r in rows}
