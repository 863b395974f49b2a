"""Operators: Argon2id passwords, TOTP second factor, lockout after repeated failures, bearer sessions."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

import asyncpg
import pyotp
import redis.asyncio as aioredis

from ecard.kit.clock import Clock, iso, to_datetime
from ecard.kit.crypto import Keys
from ecard.kit.ids import new_id, random_token
from ecard.kit.passwords import LOGINS
from ecard.kit.refusal import Refusal
from ecard.operators import store

MAX_FAILURES = 5
LOCK_S = 15 * 60
ISSUER_NAME = "ecard"


@dataclass(frozen=True)
class Session:
    token: str
    expires_at: str


class Operators:
    def __init__(
        self,
        pool: asyncpg.Pool,
        redis: aioredis.Redis,
        keys: Keys,
        clock: Clock,
        prefix: str,
        session_ttl_s: int,
    ) -> None:
        self._pool = pool
        self._redis = redis
        self._keys = keys
        self._clock = clock
        self._prefix = prefix
        self._ttl = session_ttl_s

    async def add(self, username: str, password: str | None = None) -> tuple[str, str]:
        """Create an operator; returns (password, otpauth URI). Refuses a taken username."""
        if not username or len(username) > 64 or not username.replace("-", "").replace("_", "").isalnum():
            raise Refusal("invalid_request", "username: letters, digits, - and _ only (at most 64)")
        password = password or secrets.token_urlsafe(18)
        if len(password) < 12:
            raise Refusal("invalid_request", "password: at least 12 characters")
        totp_secret = pyotp.random_base32()
        operator_id = new_id("op")
        created = await store.insert(
            self._pool,
            operator_id,
            username,
            await LOGINS.hash(password),
            self._keys.wrap_secret(totp_secret.encode(), f"totp:{operator_id}"),
        )
        if not created:
            raise Refusal("invalid_request", "username is taken")
        uri = pyotp.TOTP(totp_secret).provisioning_uri(name=username, issuer_name=ISSUER_NAME)
        return password, uri

    async def login(self, username: str, password: str, totp: str) -> Session:
        row = await store.by_username(self._pool, username)
        now = self._clock.now()
        if row is not None and row["locked_until"] is not None and row["locked_until"].timestamp() > now:
            raise Refusal("operator_locked", "too many failed logins; the account is locked for 15 minutes")
        password_ok = await LOGINS.verify(row["password_hash"] if row else None, password)
        totp_ok = False
        if row is not None:
            secret = self._keys.unwrap_secret(bytes(row["totp_secret"]), f"totp:{row['operator_id']}").decode()
            totp_ok = pyotp.TOTP(secret).verify(totp, for_time=int(now), valid_window=1)
        if row is None or not (password_ok and totp_ok):
            if row is not None:
                failures = await store.record_failure(
                    self._pool, row["operator_id"], MAX_FAILURES, to_datetime(now + LOCK_S)
                )
                if failures >= MAX_FAILURES:
                    raise Refusal("operator_locked", "too many failed logins; the account is locked for 15 minutes")
            raise Refusal("operator_credentials_invalid", "username, password or one-time code is wrong")
        # A one-time code is good for one login only, even inside its 30-second step.
        used = await self._redis.set(f"{self._prefix}totp:{{{row['operator_id']}}}:{totp}", b"1", nx=True, ex=120)
        if not used:
            raise Refusal("operator_credentials_invalid", "this one-time code has been used already")
        await store.record_success(self._pool, row["operator_id"])
        token = random_token()
        await self._redis.set(self._session_key(token), row["operator_id"].encode(), ex=self._ttl)
        return Session(token=token, expires_at=iso(now + self._ttl))

    async def operator_for(self, token: str) -> str:
        value = await self._redis.get(self._session_key(token))
        if value is None:
            raise Refusal("unauthorized", "a valid operator session (Authorization: Bearer) is required")
        return value.decode() if isinstance(value, bytes) else str(value)

    def _session_key(self, token: str) -> str:
        return f"{self._prefix}session:" + hashlib.sha256(token.encode()).hexdigest()
