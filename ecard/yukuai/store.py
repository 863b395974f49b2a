"""SQL for 渝快码 links."""

from __future__ import annotations

from datetime import datetime

import asyncpg
import msgspec

from ecard.kit.infra import Conn, Executor


class LinkRow(msgspec.Struct, frozen=True):
    link_id: str
    card_id: str
    account_id: str
    consent_version: str
    consented_at: datetime
    revoked_at: datetime | None


def _link(row: asyncpg.Record) -> LinkRow:
    return LinkRow(
        link_id=row["link_id"],
        card_id=row["card_id"],
        account_id=row["account_id"],
        consent_version=row["consent_version"],
        consented_at=row["consented_at"],
        revoked_at=row["revoked_at"],
    )


async def active_link_of_card(conn: Executor, card_id: str) -> LinkRow | None:
    row = await conn.fetchrow(
        "SELECT link_id, card_id, account_id, consent_version, consented_at, revoked_at FROM yukuai_links"
        " WHERE card_id = $1 AND revoked_at IS NULL",
        card_id,
    )
    return _link(row) if row else None


async def linked_card(conn: Executor, account_id: str) -> str | None:
    card_id: str | None = await conn.fetchval(
        "SELECT card_id FROM yukuai_links WHERE account_id = $1 AND revoked_at IS NULL", account_id
    )
    return card_id


async def insert_link(
    conn: Conn, link_id: str, card_id: str, account_id: str, consent_version: str, at: datetime
) -> LinkRow | None:
    """The new link, or None when the account is linked to another card already."""
    row = await conn.fetchrow(
        "INSERT INTO yukuai_links (link_id, card_id, account_id, consent_version, consented_at)"
        " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING"
        " RETURNING link_id, card_id, account_id, consent_version, consented_at, revoked_at",
        link_id,
        card_id,
        account_id,
        consent_version,
        at,
    )
    return _link(row) if row else None


async def revoke_link(conn: Conn, card_id: str, at: datetime) -> LinkRow | None:
    row = await conn.fetchrow(
        "UPDATE yukuai_links SET revoked_at = $2 WHERE card_id = $1 AND revoked_at IS NULL"
        " RETURNING link_id, card_id, account_id, consent_version, consented_at, revoked_at",
        card_id,
        at,
    )
    return _link(row) if row else None
