"""The provider's id_token signing keys (ES256): kept sealed in the database, published as a JWKS, rotatable."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import asyncpg
from joserfc import jwt
from joserfc.jwk import ECKey

from ecard.kit import audit
from ecard.kit.clock import Clock, to_datetime
from ecard.kit.crypto import Keys
from ecard.kit.infra import Conn
from ecard.portal import store

ALG = "ES256"
_KEY_LOCK = 0x706F7274
# a worker picks up a rotation made elsewhere within this many seconds
REFRESH_S = 5.0
# a retired key stays published this long, so that every id_token it signed can still be checked
RETIRED_PUBLISHED_S = 24 * 3600


def _context(kid: str) -> str:
    return f"portal-signing-key:{kid}"


class SigningKeys:
    """Every worker's view of the signing keys, reloaded from PostgreSQL when older than REFRESH_S."""

    def __init__(self, pool: asyncpg.Pool, keys: Keys, clock: Clock) -> None:
        self._pool = pool
        self._keys = keys
        self._clock = clock
        self._active: ECKey | None = None
        self._published: list[dict[str, str]] = []
        self._loaded_at = float("-inf")
        self._lock = asyncio.Lock()

    async def ensure_active(self) -> None:
        """Make a key on first start; safe from many workers at once."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _KEY_LOCK)
            if not any(row.status == "active" for row in await store.signing_keys(conn)):
                await self._insert_new(conn)
        await self.refresh()

    async def rotate(self, actor: str) -> str:
        """A new active key; the old one is still published until the id_tokens it signed are long expired."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _KEY_LOCK)
            await store.retire_active_key(conn, to_datetime(self._clock.now()))
            kid = await self._insert_new(conn)
            await audit.record(conn, actor, "portal.signing_key.rotated", kid, {})
        await self.refresh()
        return kid

    async def _insert_new(self, conn: Conn) -> str:
        key = ECKey.generate_key("P-256", auto_kid=True)
        kid = str(key.kid)
        public = {name: value for name, value in key.as_dict(private=False).items() if isinstance(value, str)}
        public.update(alg=ALG, use="sig")
        sealed = self._keys.wrap_secret(json.dumps(key.as_dict(private=True)).encode(), _context(kid))
        await store.insert_signing_key(conn, kid, public, sealed)
        return kid

    async def refresh(self) -> None:
        async with self._lock:
            rows = await store.signing_keys(self._pool)
            now = self._clock.now()
            active = None
            published = []
            for row in rows:
                if row.status == "active":
                    private = json.loads(self._keys.unwrap_secret(row.private_key, _context(row.kid)))
                    active = ECKey.import_key(private)
                if row.retired_at is None or row.retired_at.timestamp() + RETIRED_PUBLISHED_S > now:
                    published.append(row.public_jwk)
            self._active, self._published = active, published
            self._loaded_at = time.monotonic()

    async def _fresh(self) -> None:
        if time.monotonic() - self._loaded_at > REFRESH_S:
            await self.refresh()

    async def jwks(self) -> dict[str, list[dict[str, str]]]:
        await self._fresh()
        return {"keys": list(self._published)}

    async def sign(self, claims: dict[str, Any]) -> str:
        """A signed JWT (compact JWS) with the active key, its `kid` in the header."""
        await self._fresh()
        if self._active is None:
            raise RuntimeError("no active portal signing key")
        return jwt.encode({"alg": ALG, "kid": self._active.kid}, claims, self._active, algorithms=[ALG])
