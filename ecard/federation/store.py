"""SQL for federation: the issuer request key, the partner trust list and verifications forwarded to partners."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from ecard.kit.infra import Conn, Executor


async def request_keys(conn: Conn) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT kid, public_jwk, private_key, status FROM issuer_request_keys ORDER BY created_at DESC"
    )
    return [dict(r) for r in rows]


async def insert_request_key(conn: Conn, kid: str, jwk: dict[str, str], sealed: bytes) -> None:
    await conn.execute(
        "INSERT INTO issuer_request_keys (kid, public_jwk, private_key, status) VALUES ($1, $2, $3, 'active')",
        kid,
        jwk,
        sealed,
    )


def _partner(row: asyncpg.Record) -> dict[str, Any]:
    return dict(row)


async def insert_partner(
    conn: Executor, partner_id: str, issuer: str, name: str, base_url: str, region: str
) -> dict[str, Any] | None:
    """The new partner, or None when that issuer is registered already."""
    row = await conn.fetchrow(
        "INSERT INTO partners (partner_id, issuer, name, base_url, region) VALUES ($1, $2, $3, $4, $5)"
        " ON CONFLICT (issuer) DO NOTHING"
        " RETURNING partner_id, issuer, name, base_url, region, status, code_keys, keys_fetched_at",
        partner_id,
        issuer,
        name,
        base_url,
        region,
    )
    return _partner(row) if row else None


async def partners(conn: Executor) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT partner_id, issuer, name, base_url, region, status, code_keys, keys_fetched_at"
        " FROM partners ORDER BY issuer"
    )
    return [_partner(r) for r in rows]


async def set_code_keys(conn: Executor, issuer: str, keys: list[dict[str, Any]], at: datetime) -> None:
    await conn.execute(
        "UPDATE partners SET code_keys = $2, keys_fetched_at = $3 WHERE issuer = $1",
        issuer,
        keys,
        at,
    )


async def set_partner_status(conn: Executor, issuer: str, status: str) -> str | None:
    """The partner's id, or None when no partner has that issuer."""
    value: str | None = await conn.fetchval(
        "UPDATE partners SET status = $2 WHERE issuer = $1 RETURNING partner_id", issuer, status
    )
    return value


async def record_forwarded(
    pool: asyncpg.Pool,
    verification_id: str,
    issuer: str,
    remote_verification_id: str,
    merchant_id: str,
    item_code: str,
    terminal_id: str | None,
    place: dict[str, Any] | None,
    disclosed: list[str],
    at: datetime,
) -> None:
    await pool.execute(
        "INSERT INTO forwarded_verifications (verification_id, issuer, remote_verification_id, merchant_id, item_code,"
        " terminal_id, place, disclosed, verified_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        verification_id,
        issuer,
        remote_verification_id,
        merchant_id,
        item_code,
        terminal_id,
        place,
        disclosed,
        at,
    )
