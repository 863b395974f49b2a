"""Operators: Argon2id passwords, a TOTP second factor, throttled and locked logins, bearer sessions.

Every login attempt is counted before any password is checked: against its source address's and its
username's allowance per minute (429 `too_many_requests`), and against the locks (423 `operator_locked`).
A failure then costs the same whatever was wrong, the username included: one Argon2 check (of a dummy
hash for a username nobody has), one TOTP check, one audit entry, one answer.
"""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import dataclass

import asyncpg
import pyotp
import redis.asyncio as aioredis

from ecard.kit.clock import Clock, iso
from ecard.kit.crypto import Keys
from ecard.kit.ids import new_id, random_token
from ecard.kit.metrics import OPERATOR_LOGINS
from ecard.kit.passwords import LOGINS
from ecard.kit.refusal import Refusal
from ecard.operators.models import Attempt, Credentials, LoginPolicy, SessionOf
from ecard.operators.store import OperatorStore

ISSUER_NAME = "ecard"
UNKNOWN = "unknown"
_LOCKED = "too many failed logins; try again later (see Retry-After)"
_INVALID = "username, password or one-time code is wrong"


@dataclass(frozen=True)
class Session:
    token: str
    expires_at: str


def source_of(address: str | None) -> str:
    """The source a login is counted against: the IPv4 address, or the /64 of an IPv6 one (one subscriber's)."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return UNKNOWN
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class Operators:
    def __init__(
        self,
        pool: asyncpg.Pool,
        redis: aioredis.Redis,
        keys: Keys,
        clock: Clock,
        prefix: str,
        session_ttl_s: int,
        policy: LoginPolicy | None = None,
    ) -> None:
        self._store = OperatorStore(pool, redis, prefix)
        self._keys = keys
        self._clock = clock
        self._ttl = session_ttl_s
        self._policy = policy or LoginPolicy()
        # checked when the username is nobody's, so that the answer costs what it costs for an operator
        self._nobody = Credentials(UNKNOWN, "", keys.wrap_secret(pyotp.random_base32().encode(), "totp:nobody"), 0)

    async def add(self, username: str, password: str | None = None) -> tuple[str, str]:
        """Create an operator; returns (password, otpauth URI). Refuses a taken username."""
        if not _valid_username(username):
            raise Refusal("invalid_request", "username: letters, digits, - and _ only (at most 64)")
        password = password or secrets.token_urlsafe(18)
        if len(password) < 12:
            raise Refusal("invalid_request", "password: at least 12 characters")
        totp_secret = pyotp.random_base32()
        operator_id = new_id("op")
        created = await self._store.insert(
            operator_id,
            username,
            await LOGINS.hash(password),
            self._keys.wrap_secret(totp_secret.encode(), f"totp:{operator_id}"),
        )
        if not created:
            raise Refusal("invalid_request", "username is taken")
        uri = pyotp.TOTP(totp_secret).provisioning_uri(name=username, issuer_name=ISSUER_NAME)
        return password, uri

    async def login(self, username: str, password: str, totp: str, address: str | None = None) -> Session:
        """A session for the right password and one-time code; every attempt counted before it is checked."""
        now = self._clock.now()
        source = source_of(address)
        attempt = await self._admit(username, source, now)
        # a name `add` would refuse is nobody's, and is not looked up (PostgreSQL refuses a NUL in text)
        found = await self._store.credentials(username) if _valid_username(username) else None
        creds = found or self._nobody
        try:
            password_ok = await LOGINS.verify(found.password_hash if found else None, password)
        except Refusal as shed:
            # the hashing lane was full: nothing was checked, so the attempt is not held against anyone
            await self._store.give_back(username, source, attempt)
            OPERATOR_LOGINS.labels(outcome="overloaded").inc()
            raise shed from None
        totp_ok = self._totp_matches(creds, totp, now)
        if found is not None and password_ok and totp_ok and await self._store.claim_totp(found.operator_id, totp):
            await self._store.clear_failures(username, source)
            token = random_token()
            await self._store.open_session(token, SessionOf(found.operator_id, found.session_epoch), self._ttl)
            await self._store.audit(found.operator_id, "operator.login", found.operator_id, {"source": source})
            OPERATOR_LOGINS.labels(outcome="opened").inc()
            return Session(token=token, expires_at=iso(now + self._ttl))
        wrong = [part for part, ok in (("password", password_ok), ("totp", totp_ok)) if not ok] or ["totp_reused"]
        raise await self._failed(creds.operator_id, source, attempt, wrong)

    async def _admit(self, username: str, source: str, now: float) -> Attempt:
        """Count the attempt (source, username, locks) before any hashing; refuse it when over a limit."""
        wait = await self._store.throttle_source(source, now, self._policy)
        if wait:
            OPERATOR_LOGINS.labels(outcome="throttled").inc()
            raise Refusal("too_many_requests", "too many login attempts from this address", retry_after=wait)
        attempt = await self._store.take_attempt(username, source, now, self._policy)
        if attempt.throttled_s:
            OPERATOR_LOGINS.labels(outcome="throttled").inc()
            raise Refusal(
                "too_many_requests", "too many login attempts for this username", retry_after=attempt.throttled_s
            )
        if attempt.locked_s:
            OPERATOR_LOGINS.labels(outcome="locked").inc()
            raise Refusal("operator_locked", _LOCKED, retry_after=attempt.locked_s)
        return attempt

    def _totp_matches(self, creds: Credentials, totp: str, now: float) -> bool:
        context = "totp:nobody" if creds is self._nobody else f"totp:{creds.operator_id}"
        secret = self._keys.unwrap_secret(creds.totp_sealed, context).decode()
        return pyotp.TOTP(secret).verify(totp, for_time=int(now), valid_window=1)

    async def _failed(self, operator_id: str, source: str, attempt: Attempt, wrong: list[str]) -> Refusal:
        """Audit the failure (and the lock it sets); the refusal to answer. The same steps for a username nobody has."""
        actor = f"source:{source}"
        await self._store.audit(actor, "operator.login_failed", operator_id, {"source": source, "wrong": wrong})
        if attempt.locks_account:
            # the account itself is locked: sessions someone may already hold end with it
            detail = {"source": source, "scope": "account", "lock_s": attempt.account_lock_s}
            await self._store.end_sessions(operator_id, actor, "operator.locked", detail)
        elif attempt.locks_pair:
            detail = {"source": source, "scope": "source", "lock_s": self._policy.pair_lock_s}
            await self._store.audit(actor, "operator.locked", operator_id, detail)
        if attempt.locks_account or attempt.locks_pair:
            OPERATOR_LOGINS.labels(outcome="locked").inc()
            lock_s = max(attempt.account_lock_s, self._policy.pair_lock_s if attempt.locks_pair else 0)
            return Refusal("operator_locked", _LOCKED, retry_after=lock_s)
        OPERATOR_LOGINS.labels(outcome="refused").inc()
        return Refusal("operator_credentials_invalid", _INVALID)

    async def operator_for(self, token: str) -> str:
        """The operator whose live session `token` opens; 401 `unauthorized` otherwise."""
        session = await self._store.session(token)
        if session is None or await self._store.session_epoch(session.operator_id) != session.epoch:
            raise Refusal("unauthorized", "a valid operator session (Authorization: Bearer) is required")
        return session.operator_id

    async def log_out(self, token: str) -> None:
        """End the session `token` opens (and only it)."""
        operator_id = await self.operator_for(token)
        await self._store.close_session(token)
        await self._store.audit(operator_id, "operator.logout", operator_id, {"sessions": "this"})

    async def log_out_everywhere(self, operator_id: str) -> None:
        """End every session of the operator, on every device."""
        await self._store.end_sessions(operator_id, operator_id, "operator.logout", {"sessions": "all"})


def _valid_username(username: str) -> bool:
    """Letters, digits, - and _, at most 64: the names `add` gives."""
    return 0 < len(username) <= 64 and username.replace("-", "").replace("_", "").isalnum()
