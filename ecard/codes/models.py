"""Issuer keys and card-reference epochs as stored."""

from __future__ import annotations

from datetime import datetime

import msgspec


class IssuerKeyRow(msgspec.Struct, frozen=True):
    kid: bytes
    alg: str
    public_key: bytes
    # sealed with the key-wrap key; None when the private key comes from the environment
    private_key: bytes | None
    status: str
    not_before: datetime
    not_after: datetime | None


class EpochRow(msgspec.Struct, frozen=True):
    """A card-reference epoch: from `started_at` on, new codes seal their card reference under its key."""

    epoch: int
    started_at: datetime
