"""Authenticating signed requests: key lookup, signature, time window and single-use nonce."""

from __future__ import annotations

import time
from collections.abc import Mapping

import asyncpg
import redis.asyncio as aioredis

from ecard.clients import store
from ecard.clients.models import Client
from ecard.kit import signing
from ecard.kit.clock import Clock
from ecard.kit.crypto import b64u
from ecard.kit.ids import new_id
from ecard.kit.infra import Conn
from ecard.kit.jwk import parse_public_jwk, thumbprint
from ecard.kit.principal import ClientKind, NonceClaim, Principal
from ecard.kit.refusal import Refusal

# A disabled key stops working at once on the worker that disabled it and within this
# many seconds on the others; key lookups stay off PostgreSQL on the hot path meanwhile.
CACHE_TTL_S = 1.0


class ClientDirectory:
    """Public keys of machine clients, cached briefly in process."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._cache: dict[str, tuple[float, Client | None]] = {}

    async def get(self, key_id: str) -> Client | None:
        hit = self._cache.get(key_id)
        now = time.monotonic()
        if hit is not None and now - hit[0] < CACHE_TTL_S:
            return hit[1]
        row = await store.key_by_id(self._pool, key_id)
        client = None
        if row is not None:
            key, alg, _ = parse_public_jwk(row["public_jwk"])
            client = Client(
                key_id=row["key_id"],
                kind=ClientKind(row["kind"]),
                owner_id=row["owner_id"],
                status=row["status"],
                alg=alg,
                key=key,
                parent_id=row["parent_id"],
            )
        if len(self._cache) > 100_000:
            self._cache.clear()
        self._cache[key_id] = (now, client)
        return client

    def forget(self, key_ids: list[str]) -> None:
        for key_id in key_ids:
            self._cache.pop(key_id, None)

    async def register(
        self,
        conn: Conn,
        kind: ClientKind,
        owner_id: str,
        public_jwk: object,
        parent_id: str | None = None,
        key_id: str | None = None,
    ) -> str:
        """Store a client's public key and return the key id the client signs with (made here unless given)."""
        _, alg, canonical = parse_public_jwk(public_jwk)
        key_id = key_id or new_id("key")
        await store.insert_key(conn, key_id, kind.value, owner_id, parent_id, canonical, alg, thumbprint(canonical))
        return key_id

    async def set_owner_status(self, conn: Conn, owner_id: str, status: str) -> None:
        self.forget(await store.set_owner_status(conn, owner_id, status))


class Authenticator:
    """Checks RFC 9421 signatures exactly as API.md publishes them."""

    def __init__(
        self,
        directory: ClientDirectory,
        redis: aioredis.Redis,
        prefix: str,
        clock: Clock,
        window_s: int,
    ) -> None:
        self._directory = directory
        self._redis = redis
        self._prefix = prefix
        self._clock = clock
        self._window_s = window_s

    async def authenticate(
        self,
        method: str,
        path: str,
        query: str,
        headers: Mapping[str, str],
        body: bytes,
        kinds: frozenset[ClientKind],
        *,
        defer_nonce: bool = False,
    ) -> Principal:
        """The signer of a request; with `defer_nonce` the caller must claim `principal.nonce` itself."""
        params = signing.parse_signature_params(headers, has_body=bool(body))
        signing.check_window(params, self._clock.now(), self._window_s)
        client = await self._directory.get(params.keyid)
        if client is None:
            raise Refusal("unknown_client", "no client is registered under this keyid")
        signing.verify_signature(params, client.key, client.alg, method, path, query, headers, body)
        if client.status != "active":
            raise Refusal("client_disabled", "this client key has been disabled")
        if client.kind not in kinds:
            raise Refusal("forbidden", f"a {client.kind.value} key may not call this endpoint")
        # The nonce is claimed only after the signature verified, so nobody can burn another's nonces.
        nonce = NonceClaim(
            key=f"{self._prefix}nonce:{{{client.key_id}}}:{b64u(params.nonce.encode())}",
            ttl_s=2 * self._window_s + 1,
        )
        if not defer_nonce:
            fresh = await self._redis.set(nonce.key, b"1", nx=True, ex=nonce.ttl_s)
            if not fresh:
                raise Refusal("nonce_reused", "this nonce has been used already")
        return Principal(client.key_id, client.kind, client.owner_id, client.parent_id, nonce if defer_nonce else None)
