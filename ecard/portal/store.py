"""SQL of portal login: portals, the id_token signing keys, the holder's identity and the login history."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from ecard.kit.infra import Conn, Executor


async def insert_portal(
    conn: Conn,
    client_id: str,
    name: str,
    redirect_uris: list[str],
    jwks: dict[str, Any],
    claims: list[str],
    allowed_items: list[str],
) -> None:
    await conn.execute(
        "INSERT INTO portals (client_id, name, redirect_uris, jwks, claims, allowed_items)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        client_id,
        name,
        redirect_uris,
        jwks,
        claims,
        allowed_items,
    )


async def portal(conn: Executor, client_id: str) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        "SELECT client_id, name, redirect_uris, jwks, claims, allowed_items, created_at FROM portals"
        " WHERE client_id = $1",
        client_id,
    )
    return dict(row) if row else None


async def portals(conn: Executor) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT client_id, name, redirect_uris, jwks, claims, allowed_items, created_at FROM portals"
        " ORDER BY created_at, client_id"
    )
    return [dict(r) for r in rows]


async def signing_keys(conn: Executor) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT kid, public_jwk, private_key, status, created_at, retired_at FROM portal_signing_keys"
        " ORDER BY created_at"
    )
    return [dict(r) for r in rows]


async def retire_active_key(conn: Conn, at: datetime) -> None:
    await conn.execute(
        "UPDATE portal_signing_keys SET status = 'retired', retired_at = $1 WHERE status = 'active'",
        at,
    )


async def insert_signing_key(conn: Conn, kid: str, public_jwk: dict[str, Any], sealed: bytes) -> None:
    await conn.execute(
        "INSERT INTO portal_signing_keys (kid, public_jwk, private_key, status) VALUES ($1, $2, $3, 'active')",
        kid,
        public_jwk,
        sealed,
    )


async def card_of_device(pool: asyncpg.Pool, device_id: str) -> dict[str, Any] | None:
    row = await pool.fetchrow(
        "SELECT d.card_id, d.status AS device_status, c.status AS card_status, c.cardholder_id"
        " FROM devices d JOIN cards c USING (card_id) WHERE d.device_id = $1",
        device_id,
    )
    return dict(row) if row else None


async def holder_of_card(pool: asyncpg.Pool, card_id: str) -> dict[str, Any] | None:
    row = await pool.fetchrow(
        "SELECT c.card_id, c.status, c.region, h.cardholder_id, h.name_sealed, h.id_sealed"
        " FROM cards c JOIN cardholders h USING (cardholder_id) WHERE c.card_id = $1",
        card_id,
    )
    return dict(row) if row else None


async def record_login(
    conn: Conn,
    login_id: str,
    card_id: str,
    client_id: str,
    claims: list[str],
    outcome: str,
    cross_device: bool,
    at: datetime,
) -> bool:
    """False when the login already has its answer (another one came first)."""
    status = await conn.execute(
        "INSERT INTO portal_logins (login_id, card_id, client_id, claims, outcome, cross_device, at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (login_id) DO NOTHING",
        login_id,
        card_id,
        client_id,
        claims,
        outcome,
        cross_device,
        at,
    )
    return bool(status == "INSERT 0 1")


async def logins_of_card(pool: asyncpg.Pool, card_id: str, limit: int) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        "SELECT l.login_id, l.client_id, p.name AS portal_name, l.claims, l.outcome, l.cross_device, l.at"
        " FROM portal_logins l JOIN portals p USING (client_id)"
        " WHERE l.card_id = $1 ORDER BY l.at DESC LIMIT $2",
        card_id,
        limit,
    )
    return [dict(r) for r in rows]
