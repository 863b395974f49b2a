"""SQL for the catalog."""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from ecard.kit.infra import Conn


async def all_items(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        "SELECT item_code, name, domain, lead_department, functions, card_modes, regions, discloses,"
        " effective_from, effective_to FROM catalog_items ORDER BY item_code"
    )
    return [dict(r) for r in rows]


async def seed(conn: Conn, rows: list[dict[str, Any]]) -> int:
    """Insert the items not yet present; an item already there is left as operators made it."""
    inserted = 0
    for row in rows:
        status = await conn.execute(
            "INSERT INTO catalog_items (item_code, name, domain, lead_department, functions, card_modes, regions,"
            " discloses, effective_from, depth_targets, description)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, ($10::text)::jsonb, $11) ON CONFLICT (item_code) DO NOTHING",
            row["item_code"],
            row["name"],
            row["domain"],
            row["lead_department"],
            row["functions"],
            row["card_modes"],
            row["regions"],
            row["discloses"],
            row["effective_from"],
            json.dumps(row["depth_targets"]),
            row["description"],
        )
        inserted += status.endswith(" 1")
    return inserted
