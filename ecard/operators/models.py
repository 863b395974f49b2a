"""Operator accounts, logins and sessions."""

from __future__ import annotations

import msgspec


class SessionRequest(msgspec.Struct, forbid_unknown_fields=True):
    username: str
    password: str
    totp: str


class SessionAnswer(msgspec.Struct):
    token: str
    expires_at: str


class NewOperator(msgspec.Struct):
    username: str
    password: str
    totp_uri: str
