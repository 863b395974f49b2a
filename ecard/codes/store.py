"""SQL for issuer keys."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from ecard.kit.infra import Conn, Executor


async def all_keys(pool: Executor) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        "SELECT kid, alg, public_key, private_key, status, not_before, not_after FROM issuer_keys ORDER BY created_at"
    )
    return [dict(r) for r in rows]


async def insert_active(
    conn: Conn,
    kid: bytes,
    public_key: bytes,
    private_sealed: bytes | None,
    retire_after: datetime,
) -> None:
    """Retire the active key (verifiable until `retire_after`) and make `kid` the active one."""
    await conn.execute(
        "UPDATE issuer_keys SET status = 'retired', not_after = $1 WHERE status = 'active'", retire_after
    )
    await conn.execute(
        "INSERT INTO issuer_keys (kid, alg, public_key, private_key, status) VALUES ($1, 'EdDSA', $2, $3, 'active')"
        " ON CONFLICT (kid) DO UPDATE SET status = 'active', not_after = NULL",
        kid,
        public_key,
        private_sealed,
    )


async def revoke(conn: Executor, kid: bytes, at: datetime) -> str | None:
    """Mark a key revoked; returns its former status, None if there is no such key."""
    row = await conn.fetchrow(
        "UPDATE issuer_keys k SET status = 'revoked', not_after = COALESCE(k.not_after, $2)"
        " FROM (SELECT kid, status FROM issuer_keys WHERE kid = $1 FOR UPDATE) old"
        " WHERE k.kid = old.kid RETURNING old.status",
        kid,
        at,
    )
    return None if row is None else str(row["status"])


async def revoked_kids(pool: asyncpg.Pool) -> list[bytes]:
    return [bytes(r["kid"]) for r in await pool.fetch("SELECT kid FROM issuer_keys WHERE status = 'revoked'")]
