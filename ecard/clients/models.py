"""Machine clients: the public keys of devices, channels, merchants and terminals."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from ecard.kit.jwk import PublicKey


class ClientKind(StrEnum):
    DEVICE = "device"
    CHANNEL = "channel"
    MERCHANT = "merchant"
    TERMINAL = "terminal"
    PARTNER = "partner"


@dataclass(frozen=True)
class Client:
    key_id: str
    kind: ClientKind
    owner_id: str
    status: str
    alg: str
    key: PublicKey
    # for devices: the card the device carries; for terminals: their merchant
    parent_id: str | None = None


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
