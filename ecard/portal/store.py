"""Portal login's storage: portals, the id_token signing keys and the login history in PostgreSQL; what lives
minutes only (pushed requests, login requests, codes, tokens, seen assertions) in Redis, under hashed keys."""

from __future__ import annotations

from datetime import datetime

import asyncpg
import msgspec
import redis.asyncio as aioredis

from ecard.kit.infra import Conn, Executor
from ecard.portal.models import AccessGrant, Authorization, Ending, Grant, LoginRequest

Jwks = dict[str, list[dict[str, str]]]


class PortalRow(msgspec.Struct, frozen=True):
    client_id: str
    name: str
    redirect_uris: list[str]
    jwks: Jwks
    claims: list[str]
    allowed_items: list[str]


class SigningKeyRow(msgspec.Struct, frozen=True):
    kid: str
    public_jwk: dict[str, str]
    private_key: bytes
    status: str
    retired_at: datetime | None


class LoginRow(msgspec.Struct, frozen=True):
    login_id: str
    client_id: str
    portal_name: str
    claims: list[str]
    outcome: str
    cross_device: bool
    at: datetime


def _portal(row: asyncpg.Record) -> PortalRow:
    return PortalRow(
        client_id=row["client_id"],
        name=row["name"],
        redirect_uris=list(row["redirect_uris"]),
        jwks=msgspec.convert(row["jwks"], Jwks),
        claims=list(row["claims"]),
        allowed_items=list(row["allowed_items"]),
    )


async def insert_portal(
    conn: Conn,
    client_id: str,
    name: str,
    redirect_uris: list[str],
    jwks: Jwks,
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


async def portal(conn: Executor, client_id: str) -> PortalRow | None:
    row = await conn.fetchrow(
        "SELECT client_id, name, redirect_uris, jwks, claims, allowed_items FROM portals WHERE client_id = $1",
        client_id,
    )
    return _portal(row) if row else None


async def portals(conn: Executor) -> list[PortalRow]:
    rows = await conn.fetch(
        "SELECT client_id, name, redirect_uris, jwks, claims, allowed_items FROM portals ORDER BY created_at, client_id"
    )
    return [_portal(r) for r in rows]


async def signing_keys(conn: Executor) -> list[SigningKeyRow]:
    rows = await conn.fetch(
        "SELECT kid, public_jwk, private_key, status, retired_at FROM portal_signing_keys ORDER BY created_at"
    )
    return [
        SigningKeyRow(r["kid"], dict(r["public_jwk"]), bytes(r["private_key"]), r["status"], r["retired_at"])
        for r in rows
    ]


async def retire_active_key(conn: Conn, at: datetime) -> None:
    await conn.execute(
        "UPDATE portal_signing_keys SET status = 'retired', retired_at = $1 WHERE status = 'active'",
        at,
    )


async def insert_signing_key(conn: Conn, kid: str, public_jwk: dict[str, str], sealed: bytes) -> None:
    await conn.execute(
        "INSERT INTO portal_signing_keys (kid, public_jwk, private_key, status) VALUES ($1, $2, $3, 'active')",
        kid,
        public_jwk,
        sealed,
    )


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


async def logins_of_card(pool: asyncpg.Pool, card_id: str, limit: int) -> list[LoginRow]:
    rows = await pool.fetch(
        "SELECT l.login_id, l.client_id, p.name AS portal_name, l.claims, l.outcome, l.cross_device, l.at"
        " FROM portal_logins l JOIN portals p USING (client_id)"
        " WHERE l.card_id = $1 ORDER BY l.at DESC LIMIT $2",
        card_id,
        limit,
    )
    return [
        LoginRow(
            r["login_id"], r["client_id"], r["portal_name"], list(r["claims"]), r["outcome"], r["cross_device"], r["at"]
        )
        for r in rows
    ]


class Held:
    """What portal login keeps for minutes only, in Redis: each kind under its own key prefix, values as JSON.

    Codes, access tokens and assertion ids are stored under their SHA-256 digests (the caller hashes), never
    as themselves."""

    def __init__(self, redis: aioredis.Redis, prefix: str) -> None:
        self._redis = redis
        self._prefix = f"{prefix}portal:"

    def _key(self, kind: str, name: str) -> str:
        # the name is the hash tag: a login's request and its ending, read together, lie in one slot
        return f"{self._prefix}{kind}:{{{name}}}"

    async def first_use_of_assertion(self, client_id: str, jti_digest: str, ttl_s: int) -> bool:
        """True the first time a client's assertion id is seen (it is then remembered for `ttl_s`)."""
        return bool(await self._redis.set(self._key("jti", f"{client_id}:{jti_digest}"), b"1", nx=True, ex=ttl_s))

    async def hold_request(self, handle: str, held: Authorization, ttl_s: int) -> None:
        await self._redis.set(self._key("par", handle), msgspec.json.encode(held), ex=ttl_s)

    async def take_request(self, handle: str) -> Authorization | None:
        """The pushed request under this handle, which is gone from here on (a request_uri is used once)."""
        raw = await self._redis.getdel(self._key("par", handle))
        return msgspec.json.decode(raw, type=Authorization) if raw is not None else None

    async def hold_login(self, login: LoginRequest, ttl_s: int) -> None:
        await self._redis.set(self._key("login", login.login_id), msgspec.json.encode(login), ex=ttl_s)

    async def login(self, login_id: str) -> tuple[LoginRequest | None, Ending | None]:
        """A login request and how it ended (None while it waits), in one round trip."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.get(self._key("login", login_id))
            pipe.get(self._key("end", login_id))
            raw, ended = await pipe.execute()
        login = msgspec.json.decode(raw, type=LoginRequest) if raw is not None else None
        return login, msgspec.json.decode(ended, type=Ending) if ended is not None else None

    async def end(self, login_id: str, ending: Ending, ttl_s: int) -> bool:
        """Record how a login request ended; False when it had ended already (another answer came first)."""
        return bool(await self._redis.set(self._key("end", login_id), msgspec.json.encode(ending), nx=True, ex=ttl_s))

    async def hold_code(self, code_digest: str, grant: Grant, ttl_s: int) -> None:
        await self._redis.set(self._key("code", code_digest), msgspec.json.encode(grant), ex=ttl_s)

    async def drop_code(self, code_digest: str) -> None:
        await self._redis.delete(self._key("code", code_digest))

    async def take_code(self, code_digest: str) -> Grant | None:
        """The grant of an authorization code, which is gone from here on (a code is redeemed once)."""
        raw = await self._redis.getdel(self._key("code", code_digest))
        return msgspec.json.decode(raw, type=Grant) if raw is not None else None

    async def revoke_spent(self, code_digest: str) -> bool:
        """A code redeemed before: revoke the access token it gave (RFC 9700 §4.2.4). False for a code never seen."""
        spent = await self._redis.get(self._key("spent", code_digest))
        if spent is None:
            return False
        await self._redis.delete(self._key("at", spent.decode() if isinstance(spent, bytes) else spent))
        return True

    async def hold_access(
        self, token_digest: str, access: AccessGrant, ttl_s: int, code_digest: str, spent_ttl_s: int
    ) -> None:
        """The access token's grant, and which token the code was spent on, in one round trip.

        Not one transaction: the two keys are found by different names, so on a cluster they lie in different
        slots. Neither is any use alone: the token is handed out only after both are written."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.set(self._key("at", token_digest), msgspec.json.encode(access), ex=ttl_s)
            pipe.set(self._key("spent", code_digest), token_digest, ex=spent_ttl_s)
            await pipe.execute()

    async def access(self, token_digest: str) -> AccessGrant | None:
        raw = await self._redis.get(self._key("at", token_digest))
        return msgspec.json.decode(raw, type=AccessGrant) if raw is not None else None

    async def drop_access(self, token_digest: str) -> None:
        await self._redis.delete(self._key("at", token_digest))
