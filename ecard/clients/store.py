"""SQL for the client key registry."""

from __future__ import annotations

from typing import Any

import asyncpg

from ecard.kit.infra import Executor


async def insert_key(
    conn: Executor,
    key_id: str,
    kind: str,
    owner_id: str,
    parent_id: str | None,
    public_jwk: dict[str, str],
    alg: str,
    thumbprint: str,
) -> None:
    await conn.execute(
        "INSERT INTO client_keys (key_id, kind, owner_id, parent_id, public_jwk, alg, thumbprint)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7)",
        key_id,
        kind,
        owner_id,
        parent_id,
        public_jwk,
        alg,
        thumbprint,
    )


async def key_by_id(pool: asyncpg.Pool, key_id: str) -> dict[str, Any] | None:
    row = await pool.fetchrow(
        "SELECT key_id, kind, owner_id, parent_id, public_jwk, alg, status FROM client_keys WHERE key_id = $1",
        key_id,
    )
    return dict(row) if row else None


async def set_owner_status(conn: Executor, owner_id: str, status: str) -> list[str]:
    rows = await conn.fetch(
        "UPDATE client_keys SET status = $2 WHERE owner_id = $1 OR parent_id = $1 RETURNING key_id",
        owner_id,
        status,
    )
    return [r["key_id"] for r in rows]
