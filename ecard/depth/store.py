"""SQL for depth of use: recorded scenes and beneficiaries, and the venues that accepted the card."""

from __future__ import annotations

from datetime import datetime

import msgspec

from ecard.kit.infra import Conn, Executor


class SceneRow(msgspec.Struct, frozen=True):
    item_code: str
    district: str
    scenes: int


class PayoutRow(msgspec.Struct, frozen=True):
    """A disbursement item's beneficiaries in a year, and how many of them the card's account paid."""

    item_code: str
    year: int
    beneficiaries: int
    paid_by_card: int


class AcceptingRow(msgspec.Struct, frozen=True):
    """How many venues in a district accepted the card for an item."""

    item_code: str
    district: str
    venues: int


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


async def scenes(pool: Executor) -> list[SceneRow]:
    rows = await pool.fetch("SELECT item_code, district, scenes FROM depth_scenes")
    return [msgspec.convert(dict(r), SceneRow) for r in rows]


async def beneficiaries(pool: Executor, year: int) -> list[PayoutRow]:
    rows = await pool.fetch(
        "SELECT item_code, year, beneficiaries, paid_by_card FROM depth_beneficiaries WHERE year = $1", year
    )
    return [msgspec.convert(dict(r), PayoutRow) for r in rows]


# Reads across rooms. The report aggregates what other rooms recorded (verifications; merchants and their
# terminals; paid bills) over a window of days: counting it in the database, in one statement each, is the
# only sane way, as an aggregate report; asking each room for its rows would ship every verification of a
# month to Python. These two queries are the only SQL of this room that reads another room's tables.

# A venue is a registered terminal, in the district of its place, or a merchant that has no terminals,
# in its own region. A verification from a merchant that has terminals but names none of them is
# no venue's: there is no telling where it happened. Every recorded verification was accepted.
_ACCEPTING_VENUES_ACROSS_ROOMS = """
SELECT v.item_code, COALESCE(t.region, m.region) AS district,
       count(DISTINCT COALESCE(t.terminal_ref, m.merchant_id)) AS venues
FROM verifications v
JOIN merchants m ON m.merchant_id = v.merchant_id
LEFT JOIN terminals t ON t.merchant_id = v.merchant_id AND t.terminal_id = v.terminal_id
WHERE v.verified_at >= $1 AND v.verified_at < $2
  AND (t.terminal_ref IS NOT NULL OR NOT EXISTS (SELECT 1 FROM terminals o WHERE o.merchant_id = v.merchant_id))
GROUP BY 1, 2
"""


async def accepting_venues(pool: Executor, start: datetime, end: datetime) -> list[AcceptingRow]:
    """How many venues accepted the card per item and district in [start, end) (verify and merchants rooms)."""
    rows = await pool.fetch(_ACCEPTING_VENUES_ACROSS_ROOMS, start, end)
    return [msgspec.convert(dict(r), AcceptingRow) for r in rows]


async def paid_bill_items(pool: Executor, start: datetime, end: datetime) -> set[str]:
    """The items of bills paid in [start, end): pulled up by a merchant, paid with the card (payments room)."""
    rows = await pool.fetch("SELECT DISTINCT item_code FROM bills WHERE paid_at >= $1 AND paid_at < $2", start, end)
    return {r["item_code"] for r in rows}
