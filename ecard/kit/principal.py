"""Who signed a request: the kinds of machine client and the principal every signed route is handed."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ClientKind(StrEnum):
    DEVICE = "device"
    CHANNEL = "channel"
    MERCHANT = "merchant"
    TERMINAL = "terminal"
    PARTNER = "partner"


@dataclass(frozen=True)
class NonceClaim:
    """A request's nonce, still to be claimed (SET NX with this TTL) by the route that deferred it."""

    key: str
    ttl_s: int


@dataclass(frozen=True)
class Principal:
    """Who signed the request, once the signature (and, unless deferred, the nonce) have been checked."""

    key_id: str
    kind: ClientKind
    owner_id: str
    parent_id: str | None
    # set only for routes that claim the nonce in the same Redis round trip as their own work
    nonce: NonceClaim | None = None
