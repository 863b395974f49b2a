"""Machine clients: the public keys of devices, channels, merchants and terminals."""

from __future__ import annotations

from dataclasses import dataclass

from ecard.kit.jwk import PublicKey
from ecard.kit.principal import ClientKind


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
