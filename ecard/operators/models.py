"""Operator accounts, logins and sessions."""

from __future__ import annotations

from dataclasses import dataclass

import msgspec


class SessionRequest(msgspec.Struct, forbid_unknown_fields=True):
    username: str
    password: str
    totp: str


class SessionAnswer(msgspec.Struct):
    token: str
    expires_at: str


class Credentials(msgspec.Struct, frozen=True):
    """What a login is checked against: the password hash and the sealed TOTP secret."""

    operator_id: str
    password_hash: str
    totp_sealed: bytes
    session_epoch: int


class SessionOf(msgspec.Struct, frozen=True):
    """Whose a session is, and the operator's session epoch when it was opened."""

    operator_id: str
    epoch: int


class Attempt(msgspec.Struct, frozen=True):
    """A login attempt's place in its counters, taken before any password is checked.

    `throttled_s` / `locked_s`: refused, and for how many more seconds. Otherwise `locks_pair` /
    `locks_account` say whether this attempt, should it fail, is the one that locks its source out of the
    account, or the account as a whole (`account_lock_s` long)."""

    throttled_s: int = 0
    locked_s: int = 0
    locks_pair: bool = False
    locks_account: bool = False
    account_lock_s: int = 0


@dataclass(frozen=True)
class LoginPolicy:
    """How many login attempts go through before any password is checked, and how long locks last.

    Per window of `window_s`: `per_source` attempts from one source address, `per_username` for one
    username (429 `too_many_requests` beyond). `pair_failures` failures in a row of one username from one
    source lock that source out of that username for `pair_lock_s`; every `account_failures`-th failure in a
    row of a username, from whatever sources, locks the account itself, for `account_lock_s` doubling each
    time up to `account_lock_max_s`, and ends its sessions. Failures are forgotten `keep_s` after the last.
    """

    window_s: int = 60
    per_source: int = 20
    per_username: int = 20
    pair_failures: int = 5
    pair_lock_s: int = 15 * 60
    account_failures: int = 10
    account_lock_s: int = 15 * 60
    account_lock_max_s: int = 24 * 3600
    keep_s: int = 24 * 3600
