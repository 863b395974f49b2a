"""SQL for risk events."""

from __future__ import annotations

from typing import Any

import asyncpg


async def insert_event(
    pool: asyncpg.Pool, kind: str, card_id: str | None, merchant_id: str | None, detail: dict[str, Any]
) -> None:
    await pool.execute(
        "INSERT INTO risk_events (kind, card_id, merchant_id, detail) VALUES ($1, $2, $3, $4)",
        kind,
        card_id,
        merchant_id,
        detail,
    )
