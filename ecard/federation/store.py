"""SQL for federation: the issuer request keys, the partner trust list and verifications forwarded to partners."""

from __future__ import annotations

import contextlib
import functools
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from ecard.kit.groupcommit import GroupCommit
from ecard.kit.infra import Conn, Executor


class RequestKeyRow(msgspec.Struct, frozen=True):
    kid: str
    audience: str
    public_jwk: dict[str, str]
    private_key: bytes
    status: str


class CodeKey(msgspec.Struct, frozen=True):
    """One Ed25519 code key of a partner's published set, as fetched."""

    kid: str
    x: str
    status: str = "active"


class PartnerRow(msgspec.Struct, frozen=True):
    partner_id: str
    issuer: str
    name: str
    base_url: str
    region: str
    status: str
    key_id: str
    code_keys: list[CodeKey]
    keys_fetched_at: datetime | None


async def request_keys(conn: Conn) -> list[RequestKeyRow]:
    rows = await conn.fetch(
        "SELECT kid, audience, public_jwk, private_key, status FROM issuer_request_keys ORDER BY created_at DESC"
    )
    return [
        RequestKeyRow(r["kid"], r["audience"], dict(r["public_jwk"]), bytes(r["private_key"]), r["status"])
        for r in rows
    ]


async def insert_request_key(conn: Conn, kid: str, audience: str, jwk: dict[str, str], sealed: bytes) -> None:
    await conn.execute(
        "INSERT INTO issuer_request_keys (kid, audience, public_jwk, private_key, status)"
        " VALUES ($1, $2, $3, $4, 'active')",
        kid,
        audience,
        jwk,
        sealed,
    )


def _code_keys(stored: list[Any]) -> list[CodeKey]:
    keys = []
    for jwk in stored:
        with contextlib.suppress(msgspec.ValidationError):
            keys.append(msgspec.convert(jwk, CodeKey))
    return keys


def _partner(row: asyncpg.Record) -> PartnerRow:
    return PartnerRow(
        partner_id=row["partner_id"],
        issuer=row["issuer"],
        name=row["name"],
        base_url=row["base_url"],
        region=row["region"],
        status=row["status"],
        key_id=row["key_id"],
        code_keys=_code_keys(row["code_keys"]),
        keys_fetched_at=row["keys_fetched_at"],
    )


async def insert_partner(
    conn: Executor, partner_id: str, issuer: str, name: str, base_url: str, region: str, key_id: str
) -> PartnerRow | None:
    """The new partner, or None when that issuer is registered already."""
    row = await conn.fetchrow(
        "INSERT INTO partners (partner_id, issuer, name, base_url, region, key_id) VALUES ($1, $2, $3, $4, $5, $6)"
        " ON CONFLICT (issuer) DO NOTHING"
        " RETURNING partner_id, issuer, name, base_url, region, status, key_id, code_keys, keys_fetched_at",
        partner_id,
        issuer,
        name,
        base_url,
        region,
        key_id,
    )
    return _partner(row) if row else None


async def partners(conn: Executor) -> list[PartnerRow]:
    rows = await conn.fetch(
        "SELECT partner_id, issuer, name, base_url, region, status, key_id, code_keys, keys_fetched_at"
        " FROM partners ORDER BY issuer"
    )
    return [_partner(r) for r in rows]


async def set_code_keys(conn: Executor, issuer: str, keys: list[CodeKey], at: datetime) -> None:
    await conn.execute(
        "UPDATE partners SET code_keys = $2, keys_fetched_at = $3 WHERE issuer = $1",
        issuer,
        msgspec.to_builtins(keys),
        at,
    )


async def set_partner_status(conn: Executor, issuer: str, status: str) -> str | None:
    """The partner's id, or None when no partner has that issuer."""
    value: str | None = await conn.fetchval(
        "UPDATE partners SET status = $2 WHERE issuer = $1 RETURNING partner_id", issuer, status
    )
    return value


@dataclass(frozen=True)
class ForwardedRecord:
    """What this issuer keeps of a verification a partner decided: who asked, and the partner's record of it."""

    verification_id: str
    issuer: str
    remote_verification_id: str
    merchant_id: str
    item_code: str
    terminal_id: str | None
    place: dict[str, Any] | None
    disclosed: list[str]
    at: datetime


_RECORD_FORWARDED_MANY = """
INSERT INTO forwarded_verifications (verification_id, issuer, remote_verification_id, merchant_id, item_code,
                                     terminal_id, place, disclosed, verified_at)
SELECT verification_id, issuer, remote_verification_id, merchant_id, item_code, terminal_id, place::jsonb,
       ARRAY(SELECT e FROM jsonb_array_elements_text(disclosed::jsonb) WITH ORDINALITY AS d(e, k) ORDER BY k),
       verified_at
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
            $9::timestamptz[])
    AS i(verification_id, issuer, remote_verification_id, merchant_id, item_code, terminal_id, place, disclosed,
         verified_at)
"""


async def record_forwarded_many(pool: asyncpg.Pool, records: list[ForwardedRecord]) -> list[None]:
    """Every record in one statement and one commit."""
    await pool.execute(
        _RECORD_FORWARDED_MANY,
        [r.verification_id for r in records],
        [r.issuer for r in records],
        [r.remote_verification_id for r in records],
        [r.merchant_id for r in records],
        [r.item_code for r in records],
        [r.terminal_id for r in records],
        [None if r.place is None else json.dumps(r.place) for r in records],
        [json.dumps(r.disclosed) for r in records],
        [r.at for r in records],
    )
    return [None] * len(records)


def forwarded_records(pool: asyncpg.Pool) -> GroupCommit[ForwardedRecord, None]:
    """The records of forwarded verifications that arrive together, in one statement and one commit."""
    return GroupCommit(functools.partial(record_forwarded_many, pool))
