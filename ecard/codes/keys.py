"""The issuer's code-signing keys and card-reference epochs: made on first start, rotated without downtime,
keys revocable at once; every rotation and revocation audited."""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass

import asyncpg
import redis.asyncio as aioredis
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from ecard.codes import store
from ecard.codes.models import EpochRow
from ecard.config import Settings
from ecard.kit import audit, cache
from ecard.kit.clock import Clock, iso, to_datetime
from ecard.kit.crypto import Keys, b64u, b64u_decode, card_ref_epoch
from ecard.kit.infra import Conn
from ecard.kit.principal import NonceClaim
from ecard.kit.refusal import Refusal

REFRESH_S = 5.0
MISS_REFRESH_S = 0.5


def kid_of(public_raw: bytes) -> bytes:
    """The 8-byte COSE kid: the first 8 bytes of SHA-256 of the raw public key."""
    return hashlib.sha256(public_raw).digest()[:8]


def _raw_public(key: ed25519.Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _raw_private(key: ed25519.Ed25519PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())


@dataclass(frozen=True)
class IssuerKey:
    kid: bytes
    public: ed25519.Ed25519PublicKey
    public_raw: bytes
    private: ed25519.Ed25519PrivateKey | None
    status: str
    not_before: float
    not_after: float | None


class KeyRing:
    """Every worker's view of the issuer keys, refreshed from PostgreSQL; revocation is also flagged in Redis."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        redis: aioredis.Redis,
        keys: Keys,
        clock: Clock,
        prefix: str,
        issuer: str,
        code_ttl_s: int,
        skew_s: int,
        env_private_key: str | None = None,
    ) -> None:
        self._pool = pool
        self._redis = redis
        self._keys = keys
        self._clock = clock
        self._prefix = prefix
        self._issuer = issuer
        self._grace_s = code_ttl_s + skew_s
        self._env_key = (
            ed25519.Ed25519PrivateKey.from_private_bytes(b64u_decode(env_private_key)) if env_private_key else None
        )
        self._by_kid: dict[bytes, IssuerKey] = {}
        self._active: IssuerKey | None = None
        self._epochs: list[EpochRow] = []
        self._loaded_at = float("-inf")
        self._lock = asyncio.Lock()

    @classmethod
    def from_settings(
        cls, pool: asyncpg.Pool, redis: aioredis.Redis, keys: Keys, clock: Clock, settings: Settings
    ) -> KeyRing:
        return cls(
            pool,
            redis,
            keys,
            clock,
            settings.redis_prefix,
            settings.issuer_id,
            settings.code_ttl_s,
            settings.clock_skew_s,
            settings.issuer_signing_key,
        )

    def revoked_flag(self, kid: bytes, near: bytes) -> str:
        """The copy of the key's revocation flag in the shard of `near` (a code's cti: the slot of its claim)."""
        return self._flag(kid, cache.shard_tag(near))

    def _flag(self, kid: bytes, tag: str) -> str:
        return f"{self._prefix}{tag}:revoked-kid:{kid.hex()}"

    def _every_copy(self, kids: list[bytes]) -> list[str]:
        return [self._flag(kid, tag) for kid in kids for tag in cache.all_shard_tags()]

    async def ensure_active(self) -> None:
        """Make sure an active key exists (the environment's, else a new one); safe from many workers at once."""
        async with self._pool.acquire() as conn, conn.transaction():
            await store.lock_keys(conn)
            rows = await store.all_keys(conn)
            if self._env_key is not None:
                public_raw = _raw_public(self._env_key)
                kid = kid_of(public_raw)
                if not any(r.kid == kid and r.status == "active" for r in rows):
                    if any(r.kid == kid and r.status == "revoked" for r in rows):
                        raise RuntimeError("ECARD_ISSUER_SIGNING_KEY names a revoked key")
                    await store.insert_active(
                        conn, kid, public_raw, None, to_datetime(self._clock.now() + self._grace_s)
                    )
            elif not any(r.status == "active" for r in rows):
                await self._insert_new(conn)
        await self.refresh()

    async def _insert_new(self, conn: Conn) -> bytes:
        """A fresh key, sealed in the database, made the active one (the caller holds the key lock)."""
        private = ed25519.Ed25519PrivateKey.generate()
        public_raw = _raw_public(private)
        kid = kid_of(public_raw)
        sealed = self._keys.wrap_secret(_raw_private(private), f"issuer-key:{kid.hex()}")
        await store.insert_active(conn, kid, public_raw, sealed, to_datetime(self._clock.now() + self._grace_s))
        return kid

    async def rotate(self, actor: str) -> bytes:
        """Add a new active key; the old one stays verifiable until every code it signed has expired."""
        async with self._pool.acquire() as conn, conn.transaction():
            await store.lock_keys(conn)
            retired = [b64u(k.kid) for k in await store.all_keys(conn) if k.status == "active"]
            kid = await self._insert_new(conn)
            await audit.record(conn, actor, "issuer_key.rotated", b64u(kid), {"retired": retired})
        await self.refresh()
        return kid

    async def revoke(self, kid: bytes, actor: str) -> None:
        """Refuse this key's codes at once, on every worker: the Redis flag is read on every verification."""
        async with self._pool.acquire() as conn, conn.transaction():
            await store.lock_keys(conn)
            before = await store.revoke(conn, kid, to_datetime(self._clock.now()))
            if before is None:
                raise Refusal("unknown_key", "no issuer key has this kid")
            await store.flag_revoked(self._redis, self._every_copy([kid]))
            replaced_by = b64u(await self._insert_new(conn)) if before == "active" else None
            await audit.record(
                conn, actor, "issuer_key.revoked", b64u(kid), {"was": before, "replaced_by": replaced_by}
            )
        await self.refresh()

    async def start_epoch(self, actor: str) -> int:
        """Start a new card-reference epoch: new codes seal under its key, codes in flight still open."""
        async with self._pool.acquire() as conn, conn.transaction():
            await store.lock_keys(conn)
            epoch = await store.start_epoch(conn, to_datetime(self._clock.now()), actor)
            await audit.record(conn, actor, "card_ref_epoch.started", str(epoch), {})
        await self.refresh()
        return epoch

    async def republish_revocations(self) -> None:
        """Restore the Redis flags from PostgreSQL (a cache that lost its data must not un-revoke a key)."""
        await store.flag_revoked(self._redis, self._every_copy(await store.revoked_kids(self._pool)))

    async def refresh(self) -> None:
        async with self._lock:
            rows = await store.all_keys(self._pool)
            epochs = await store.epochs(self._pool)
            by_kid: dict[bytes, IssuerKey] = {}
            active = None
            for row in rows:
                private = None
                if row.private_key is not None:
                    seed = self._keys.unwrap_secret(row.private_key, f"issuer-key:{row.kid.hex()}")
                    private = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
                elif self._env_key is not None and kid_of(_raw_public(self._env_key)) == row.kid:
                    private = self._env_key
                key = IssuerKey(
                    kid=row.kid,
                    public=ed25519.Ed25519PublicKey.from_public_bytes(row.public_key),
                    public_raw=row.public_key,
                    private=private,
                    status=row.status,
                    not_before=row.not_before.timestamp(),
                    not_after=row.not_after.timestamp() if row.not_after else None,
                )
                by_kid[row.kid] = key
                if key.status == "active":
                    active = key
            self._by_kid, self._active, self._epochs = by_kid, active, epochs
            self._loaded_at = time.monotonic()

    async def keep_fresh(self) -> None:
        """Background task of each worker: pick up rotations made elsewhere."""
        while True:
            await asyncio.sleep(REFRESH_S)
            try:
                await self.refresh()
            except Exception:  # noqa: S112 - an outage must not kill the refresher; the next round retries
                continue

    def _trusted_flags(self) -> list[str]:
        """The flags of every key still trusted, all from one shard (any one: each has a copy of every flag)."""
        now = self._clock.now()
        tag = cache.any_shard_tag()
        return [
            self._flag(kid, tag)
            for kid, key in self._by_kid.items()
            if key.status == "active" or (key.status == "retired" and (key.not_after or now) >= now)
        ]

    async def notice_revocations(self) -> None:
        """Reload at once when another process (`ecard keys revoke`) has flagged a key this worker still trusts."""
        if await store.any_flagged(self._redis, self._trusted_flags()):
            await self.refresh()

    async def signing_key(self, nonce: NonceClaim | None = None) -> IssuerKey:
        """The active key to sign new codes with; never one revoked a moment ago elsewhere.

        The request's nonce, when its route deferred it, is claimed in the same round trip."""
        fresh, flagged = await store.claim_nonce_and_read_flags(
            self._redis, nonce, self._trusted_flags(), cache.new_token()
        )
        if not fresh:
            raise Refusal("nonce_reused", "this nonce has been used already")
        if flagged:
            await self.refresh()
        return self.active()

    # --- card-reference epochs --------------------------------------------------------------------

    @property
    def card_ref_epoch(self) -> int:
        """The epoch new codes seal their card reference under (0 until one is started)."""
        return self._epochs[-1].epoch if self._epochs else 0

    def _open_epochs(self) -> set[int]:
        """The current epoch, and each earlier one until its successor has been current for a code's lifetime
        (plus a refresh, for a worker that went on sealing under it a little longer)."""
        since = self._clock.now() - self._grace_s - REFRESH_S
        opened = {self.card_ref_epoch}
        previous = 0
        for started in self._epochs:
            if started.started_at.timestamp() > since:
                opened.add(previous)
            previous = started.epoch
        return opened

    async def open_card_ref(self, sealed: bytes) -> bytes:
        """The card reference of one of our codes; SealError for an epoch that is unknown or closed, or a forgery."""
        epoch = card_ref_epoch(sealed)
        if epoch > self.card_ref_epoch and time.monotonic() - self._loaded_at > MISS_REFRESH_S:
            # an epoch started on another worker a moment ago
            await self.refresh()
        return self._keys.open_card_ref(sealed, self._issuer, self._open_epochs())

    def active(self) -> IssuerKey:
        if self._active is None or self._active.private is None:
            raise RuntimeError("no active issuer key with a private part")
        return self._active

    async def for_kid(self, kid: bytes) -> IssuerKey | None:
        key = self._by_kid.get(kid)
        if key is None and time.monotonic() - self._loaded_at > MISS_REFRESH_S:
            # a key rotated in on another worker a moment ago
            await self.refresh()
            key = self._by_kid.get(kid)
        return key

    def published(self) -> list[dict[str, str | None]]:
        now = self._clock.now()
        keys: list[dict[str, str | None]] = []
        for key in self._by_kid.values():
            if key.status == "retired" and key.not_after is not None and key.not_after < now:
                continue
            keys.append(
                {
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "x": b64u(key.public_raw),
                    "kid": b64u(key.kid),
                    "alg": "EdDSA",
                    "use": "sig",
                    "status": key.status,
                    "not_before": iso(key.not_before),
                    "not_after": iso(key.not_after) if key.not_after is not None else None,
                }
            )
        return keys

    @property
    def issuer(self) -> str:
        return self._issuer
