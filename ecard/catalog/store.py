"""SQL for the catalog and its versions."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec

from ecard.catalog.models import Item, Version, field_changes
from ecard.kit.infra import Conn, Executor

# Catalog changes are rare and small; one at a time keeps version numbers gapless and each diff against what is.
_CATALOG_LOCK = 0x63617467


_ITEM = (
    "SELECT item_code, name, domain, lead_department, functions, card_modes, regions, discloses,"
    " effective_from, effective_to, depth_targets, description FROM catalog_items"
)


def _items(rows: list[asyncpg.Record]) -> list[Item]:
    return [msgspec.convert(dict(r), Item) for r in rows]


async def current(pool: asyncpg.Pool) -> tuple[int, list[Item]]:
    """The latest version number and every item, read from one snapshot so that they belong together."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        version = await latest_version(conn)
        rows = await conn.fetch(_ITEM + " ORDER BY item_code")
    return version, _items(rows)


async def latest_version(conn: Executor) -> int:
    version: int = await conn.fetchval("SELECT coalesce(max(version), 0) FROM catalog_versions")
    return version


async def lock_for_change(conn: Conn) -> None:
    await conn.execute("SELECT pg_advisory_xact_lock($1)", _CATALOG_LOCK)


async def items(conn: Conn, codes: list[str]) -> list[Item]:
    return _items(await conn.fetch(_ITEM + " WHERE item_code = ANY($1::text[]) ORDER BY item_code", codes))


async def upsert_item(conn: Conn, item: Item) -> None:
    await conn.execute(
        "INSERT INTO catalog_items (item_code, name, domain, lead_department, functions, card_modes, regions,"
        " discloses, effective_from, effective_to, depth_targets, description)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, ($11::text)::jsonb, $12)"
        " ON CONFLICT (item_code) DO UPDATE SET name = $2, domain = $3, lead_department = $4, functions = $5,"
        " card_modes = $6, regions = $7, discloses = $8, effective_from = $9, effective_to = $10,"
        " depth_targets = ($11::text)::jsonb, description = $12",
        item.item_code,
        item.name,
        item.domain,
        item.lead_department,
        list(item.functions),
        list(item.card_modes),
        list(item.regions),
        list(item.discloses),
        item.effective_from,
        item.effective_to,
        json.dumps(item.depth_targets),
        item.description,
    )


async def insert_version(
    conn: Conn, actor: str, at: datetime, changes: list[tuple[str, dict[str, dict[str, Any]]]]
) -> int:
    """The next version, with what it changed per item; the caller holds the catalog lock."""
    version = await latest_version(conn) + 1
    await conn.execute(
        "INSERT INTO catalog_versions (version, created_at, actor) VALUES ($1, $2, $3)", version, at, actor
    )
    await conn.executemany(
        # jsonb as text: the seed runs on bare connections that have no jsonb codec
        "INSERT INTO catalog_changes (version, item_code, fields) VALUES ($1, $2, ($3::text)::jsonb)",
        [(version, code, json.dumps(fields, ensure_ascii=False)) for code, fields in changes],
    )
    return version


async def versions(pool: asyncpg.Pool, before: int | None, limit: int) -> list[Version]:
    rows = await pool.fetch(
        "SELECT v.version, v.created_at, v.actor,"
        " coalesce(jsonb_agg(jsonb_build_object('item_code', c.item_code, 'fields', c.fields) ORDER BY c.item_code)"
        " FILTER (WHERE c.item_code IS NOT NULL), '[]'::jsonb) AS changes"
        " FROM catalog_versions v LEFT JOIN catalog_changes c USING (version)"
        " WHERE $1::integer IS NULL OR v.version < $1"
        " GROUP BY v.version ORDER BY v.version DESC LIMIT $2",
        before,
        limit,
    )
    return [msgspec.convert(dict(r), Version) for r in rows]


async def seed(conn: Conn, rows: list[dict[str, Any]]) -> int:
    """Insert the items not yet present, as one version by "seed"; an item already there is left as it is."""
    await lock_for_change(conn)
    inserted: list[tuple[str, dict[str, dict[str, Any]]]] = []
    for row in rows:
        status = await conn.execute(
            "INSERT INTO catalog_items (item_code, name, domain, lead_department, functions, card_modes, regions,"
            " discloses, effective_from, effective_to, depth_targets, description)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, ($11::text)::jsonb, $12)"
            " ON CONFLICT (item_code) DO NOTHING",
            row["item_code"],
            row["name"],
            row["domain"],
            row["lead_department"],
            row["functions"],
            row["card_modes"],
            row["regions"],
            row["discloses"],
            row["effective_from"],
            row.get("effective_to"),
            json.dumps(row["depth_targets"]),
            row["description"],
        )
        if status.endswith(" 1"):
            inserted.append((row["item_code"], field_changes(None, Item(**row))))
    if inserted:
        await insert_version(conn, "seed", datetime.now(UTC), inserted)
    return len(inserted)
