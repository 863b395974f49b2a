"""SQL for operators."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg


async def insert(pool: asyncpg.Pool, operator_id: str, username: str, password_hash: str, totp_sealed: bytes) -> bool:
    row = await pool.fetchrow(
        "INSERT INTO operators (operator_id, username, password_hash, totp_secret) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (username) DO NOTHING RETURNING operator_id",
        operator_id,
        username,
        password_hash,
        totp_sealed,
    )
    return row is not None


async def by_username(pool: asyncpg.Pool, username: str) -> dict[str, Any] | None:
    row = await pool.fetchrow(
        "SELECT operator_id, password_hash, totp_secret, failed_logins, locked_until FROM operators"
        " WHERE username = $1",
        username,
    )
    return dict(row) if row else None


async def record_failure(pool: asyncpg.Pool, operator_id: str, limit: int, lock_until: datetime) -> int:
    """Count a failed login; the `limit`-th failure in a row locks the account. Returns the count."""
    count: int = await pool.fetchval(
        "UPDATE operators SET failed_logins = CASE WHEN failed_logins + 1 >= $2 THEN 0 ELSE failed_logins + 1 END,"
        " locked_until = CASE WHEN failed_logins + 1 >= $2 THEN $3 ELSE locked_until END"
        " WHERE operator_id = $1 RETURNING CASE WHEN locked_until = $3 THEN $2 ELSE failed_logins END",
        operator_id,
        limit,
        lock_until,
    )
    return count


async def record_success(pool: asyncpg.Pool, operator_id: str) -> None:
    await pool.execute(
        "UPDATE operators SET failed_logins = 0, locked_until = NULL WHERE operator_id = $1", operator_id
    )
