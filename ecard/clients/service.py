"""Authenticating signed requests: key lookup, signature, time window and single-use nonce."""

from __future__ import annotations

import hmac
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping

import asyncpg
import redis.asyncio as aioredis

from ecard.clients import store
from ecard.clients.models import Client
from ecard.kit import ids, signing
from ecard.kit.clock import Clock
from ecard.kit.crypto import Keys, b64u
from ecard.kit.infra import Conn
from ecard.kit.jwk import parse_public_jwk, thumbprint
from ecard.kit.principal import ClientKind, NonceClaim, Principal
from ecard.kit.refusal import Refusal

# A disabled key stops working at once on the worker that disabled it and within this
# many seconds on the others; key lookups stay off PostgreSQL on the hot path meanwhile.
CACHE_TTL_S = 1.0
# A key id that names no key stays unknown this long: minted ids are issued only with their key.
NEGATIVE_TTL_S = 60.0
# At most this many key ids (known and unknown) are cached per worker, the least recently used leaving first.
CACHE_MAX_ENTRIES = 100_000
# How often, at most, a worker re-reads the partner key ids (not minted, `<issuer>:<kid>`) for an unknown one.
PARTNER_IDS_RELOAD_S = 1.0
_MINTED_PREFIX = "key_"


class ClientDirectory:
    """Public keys of machine clients, cached briefly in process.

    A key id the service mints (`key_` + 8 random bytes + their 8-byte keyed tag) proves itself: a made-up
    one is refused without a look-up or a cache entry. Ids registered before tags existed are known from a
    set read at start (their number only shrinks), partner ids from a set re-read at most once a second.
    So a flood of random key ids costs neither a database query per request nor memory without bound.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        keys: Keys,
        *,
        max_entries: int = CACHE_MAX_ENTRIES,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pool = pool
        self._keys = keys
        self._max_entries = max_entries
        self._monotonic = monotonic
        self._cache: OrderedDict[str, tuple[float, Client | None]] = OrderedDict()
        self._legacy: set[str] | None = None
        self._partners: set[str] = set()
        self._partners_read_at = float("-inf")
        # database look-ups made, for the operator's metrics and the tests' eyes
        self.lookups = 0

    def __len__(self) -> int:
        return len(self._cache)

    @property
    def max_entries(self) -> int:
        return self._max_entries

    def mint_key_id(self) -> str:
        body = os.urandom(8)
        return _MINTED_PREFIX + ids.encode(body + self._keys.key_id_tag(body))

    def _minted(self, key_id: str) -> bool:
        if not key_id.startswith(_MINTED_PREFIX):
            return False
        try:
            raw = ids.id_to_bytes(key_id)
        except ValueError:
            return False
        # one spelling per id: 26 base32 characters hold 130 bits, and the top two must be zero
        canonical = ids.encode(raw) == key_id[len(_MINTED_PREFIX) :]
        return canonical and hmac.compare_digest(raw[8:], self._keys.key_id_tag(raw[:8]))

    async def _may_exist(self, key_id: str) -> bool:
        """Whether a key id can name a registered key at all, answered without a query in all but rare cases."""
        if self._minted(key_id):
            return True
        if key_id.startswith(_MINTED_PREFIX):
            if self._legacy is None:
                self.lookups += 1
                self._legacy = await store.unminted_key_ids(self._pool, legacy=True)
            return key_id in self._legacy
        if key_id not in self._partners and self._monotonic() - self._partners_read_at >= PARTNER_IDS_RELOAD_S:
            self._partners_read_at = self._monotonic()
            self.lookups += 1
            self._partners = await store.unminted_key_ids(self._pool, legacy=False)
        return key_id in self._partners

    async def get(self, key_id: str) -> Client | None:
        now = self._monotonic()
        hit = self._cache.get(key_id)
        if hit is not None:
            self._cache.move_to_end(key_id)
            if now - hit[0] < (CACHE_TTL_S if hit[1] is not None else NEGATIVE_TTL_S):
                return hit[1]
        if not await self._may_exist(key_id):
            return None
        self.lookups += 1
        row = await store.key_by_id(self._pool, key_id)
        client = None
        if row is not None:
            key, alg, _ = parse_public_jwk(row.public_jwk)
            client = Client(
                key_id=row.key_id,
                kind=ClientKind(row.kind),
                owner_id=row.owner_id,
                status=row.status,
                alg=alg,
                key=key,
                parent_id=row.parent_id,
            )
        self._cache[key_id] = (now, client)
        self._cache.move_to_end(key_id)
        while len(self._cache) > self._max_entries:
            self._cache.popitem(last=False)
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
        """Store a client's public key and return the key id the client signs with (minted here unless given)."""
        _, alg, canonical = parse_public_jwk(public_jwk)
        minted = key_id is None
        key_id = key_id or self.mint_key_id()
        await store.insert_key(
            conn, key_id, kind.value, owner_id, parent_id, canonical, alg, thumbprint(canonical), minted=minted
        )
        if not minted:
            self._partners.add(key_id)
        self.forget([key_id])
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
        if not defer_nonce and not await store.claim_nonce(self._redis, nonce.key, nonce.ttl_s):
            raise Refusal("nonce_reused", "this nonce has been used already")
        return Principal(client.key_id, client.kind, client.owner_id, client.parent_id, nonce if defer_nonce else None)
