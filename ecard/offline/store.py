"""SQL of offline taps: each tap's answer, kept once per terminal and tap_id; one upload of a terminal at a time."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import datetime

import asyncpg

from ecard.offline.models import TapResult


@contextlib.asynccontextmanager
async def terminal_turn(pool: asyncpg.Pool, terminal_key: str) -> AsyncIterator[None]:
    """One upload of a terminal at a time, on every host: the same tap sent twice at once is judged once."""
    async with pool.acquire() as conn:
        await conn.execute("SELECT pg_advisory_lock(hashtextextended('offline:' || $1, 0))", terminal_key)
        try:
            yield
        finally:
            await conn.execute("SELECT pg_advisory_unlock(hashtextextended('offline:' || $1, 0))", terminal_key)


async def results(pool: asyncpg.Pool, terminal_key: str, tap_ids: list[str]) -> dict[str, TapResult]:
    rows = await pool.fetch(
        "SELECT tap_id, result, verification_id FROM offline_taps WHERE terminal_key = $1 AND tap_id = ANY($2)",
        terminal_key,
        tap_ids,
    )
    return {r["tap_id"]: TapResult(**r) for r in rows}


async def keep(pool: asyncpg.Pool, terminal_key: str, result: TapResult, tapped_at: datetime) -> None:
    await pool.execute(
        "INSERT INTO offline_taps (terminal_key, tap_id, result, verification_id, tapped_at)"
        " VALUES ($1, $2, $3, $4, $5)",
        terminal_key,
        result.tap_id,
        result.result,
        result.verification_id,
        tapped_at,
    )
