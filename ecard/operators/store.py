"""Operators' rows in PostgreSQL; their login counters, one-time codes and sessions in Redis."""

from __future__ import annotations

import hashlib
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from ecard.kit import audit
from ecard.operators.models import Attempt, Credentials, LoginPolicy, SessionOf

# KEYS: the username's throttle window, the (username, source) guard, the username's account guard; all in the
# username's hash slot, so that one script counts them together. ARGV: now, username allowance, window TTL,
# window end, pair limit, pair lock, account step, account lock, longest account lock, how long guards are kept.
# Returns {verdict (0 go, 1 throttled, 2 locked), seconds, locks pair, locks account, account lock seconds}.
_TAKE_ATTEMPT = """
local now = tonumber(ARGV[1])
local used = redis.call('INCR', KEYS[1])
if used == 1 then redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3])) end
if used > tonumber(ARGV[2]) then return {1, tonumber(ARGV[4]) - now, 0, 0, 0} end
local pair = redis.call('HMGET', KEYS[2], 'n', 'until')
local account = redis.call('HMGET', KEYS[3], 'n', 'until')
local pn, pu = tonumber(pair[1]) or 0, tonumber(pair[2]) or 0
local an, au = tonumber(account[1]) or 0, tonumber(account[2]) or 0
if au > now then return {2, au - now, 0, 0, 0} end
if pu > now then return {2, pu - now, 0, 0, 0} end
if pu > 0 then pn = 0 end
pn = pn + 1
an = an + 1
pu = 0
local locks_pair, locks_account, lock_s = 0, 0, 0
if pn >= tonumber(ARGV[5]) then
  pu = now + tonumber(ARGV[6])
  locks_pair = 1
end
local step = tonumber(ARGV[7])
if an % step == 0 then
  lock_s = math.floor(math.min(tonumber(ARGV[8]) * 2 ^ (an / step - 1), tonumber(ARGV[9])))
  au = now + lock_s
  locks_account = 1
end
redis.call('HSET', KEYS[2], 'n', pn, 'until', pu)
redis.call('HSET', KEYS[3], 'n', an, 'until', au)
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[10]))
redis.call('EXPIRE', KEYS[3], tonumber(ARGV[10]))
return {0, 0, locks_pair, locks_account, lock_s}
"""

# An attempt that was never checked (its hashing lane was full) gives its place back, and the lock it would
# have set. KEYS: the pair guard, the account guard. ARGV: whether it locked the pair, the account.
_GIVE_BACK = """
for i, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 then
    if tonumber(redis.call('HGET', key, 'n') or '0') > 0 then redis.call('HINCRBY', key, 'n', -1) end
    if ARGV[i] == '1' then redis.call('HSET', key, 'until', 0) end
  end
end
return 0
"""


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class OperatorStore:
    def __init__(self, pool: asyncpg.Pool, redis: aioredis.Redis, prefix: str) -> None:
        self._pool = pool
        self._redis = redis
        self._prefix = prefix
        self._take = redis.register_script(_TAKE_ATTEMPT)
        self._give_back = redis.register_script(_GIVE_BACK)

    # PostgreSQL

    async def insert(self, operator_id: str, username: str, password_hash: str, totp_sealed: bytes) -> bool:
        row = await self._pool.fetchrow(
            "INSERT INTO operators (operator_id, username, password_hash, totp_secret) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (username) DO NOTHING RETURNING operator_id",
            operator_id,
            username,
            password_hash,
            totp_sealed,
        )
        return row is not None

    async def credentials(self, username: str) -> Credentials | None:
        row = await self._pool.fetchrow(
            "SELECT operator_id, password_hash, totp_secret, session_epoch FROM operators WHERE username = $1",
            username,
        )
        if row is None:
            return None
        return Credentials(row["operator_id"], row["password_hash"], bytes(row["totp_secret"]), row["session_epoch"])

    async def session_epoch(self, operator_id: str) -> int | None:
        epoch: int | None = await self._pool.fetchval(
            "SELECT session_epoch FROM operators WHERE operator_id = $1", operator_id
        )
        return epoch

    async def end_sessions(self, operator_id: str, actor: str, action: str, detail: dict[str, Any]) -> None:
        """Every session of the operator ends (its epoch moves on), audited in the same transaction."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "UPDATE operators SET session_epoch = session_epoch + 1 WHERE operator_id = $1", operator_id
            )
            await audit.record(conn, actor, action, operator_id, detail)

    async def audit(self, actor: str, action: str, subject: str, detail: dict[str, Any]) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            await audit.record(conn, actor, action, subject, detail)

    # Redis: login counters

    def _guard_keys(self, username: str, source: str) -> list[str]:
        slot = f"{self._prefix}login:{{{_digest(username)}}}"
        return [f"{slot}:source:{_digest(source)}", f"{slot}:account"]

    async def throttle_source(self, source: str, now: float, policy: LoginPolicy) -> int:
        """Count an attempt from `source` in the current window; seconds to wait when over the allowance, else 0."""
        window = int(now // policy.window_s)
        key = f"{self._prefix}login:source:{_digest(source)}:{window}"
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, 2 * policy.window_s)
            used, _ = await pipe.execute()
        return _wait((window + 1) * policy.window_s - now) if int(used) > policy.per_source else 0

    async def take_attempt(self, username: str, source: str, now: float, policy: LoginPolicy) -> Attempt:
        """Count the attempt against the username's allowance and its locks, atomically, before any check."""
        window = int(now // policy.window_s)
        keys = [f"{self._prefix}login:{{{_digest(username)}}}:window:{window}", *self._guard_keys(username, source)]
        verdict, seconds, locks_pair, locks_account, lock_s = await self._take(
            keys=keys,
            args=[
                int(now),
                policy.per_username,
                2 * policy.window_s,
                (window + 1) * policy.window_s,
                policy.pair_failures,
                policy.pair_lock_s,
                policy.account_failures,
                policy.account_lock_s,
                policy.account_lock_max_s,
                policy.keep_s,
            ],
        )
        if verdict == 1:
            return Attempt(throttled_s=_wait(seconds))
        if verdict == 2:
            return Attempt(locked_s=_wait(seconds))
        return Attempt(locks_pair=locks_pair == 1, locks_account=locks_account == 1, account_lock_s=int(lock_s))

    async def give_back(self, username: str, source: str, attempt: Attempt) -> None:
        await self._give_back(
            keys=self._guard_keys(username, source),
            args=[int(attempt.locks_pair), int(attempt.locks_account)],
        )

    async def clear_failures(self, username: str, source: str) -> None:
        await self._redis.delete(*self._guard_keys(username, source))

    # Redis: one-time codes and sessions

    async def claim_totp(self, operator_id: str, code: str) -> bool:
        """True the first time this code is used by this operator (codes live 90 s: previous, current, next)."""
        used = await self._redis.set(f"{self._prefix}totp:{{{operator_id}}}:{code}", b"1", nx=True, ex=120)
        return bool(used)

    def _session_key(self, token: str) -> str:
        return f"{self._prefix}session:" + hashlib.sha256(token.encode()).hexdigest()

    async def open_session(self, token: str, session: SessionOf, ttl_s: int) -> None:
        await self._redis.set(self._session_key(token), f"{session.operator_id} {session.epoch}".encode(), ex=ttl_s)

    async def session(self, token: str) -> SessionOf | None:
        value = await self._redis.get(self._session_key(token))
        if value is None:
            return None
        operator_id, _, epoch = (value.decode() if isinstance(value, bytes) else str(value)).partition(" ")
        return SessionOf(operator_id, int(epoch)) if epoch.isdigit() else None

    async def close_session(self, token: str) -> None:
        await self._redis.delete(self._session_key(token))


def _wait(seconds: float) -> int:
    return max(1, int(-(-seconds // 1)))
