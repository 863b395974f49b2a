"""Machine clients: the public keys of devices, channels, merchants and terminals."""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

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


class KeyRow(msgspec.Struct, frozen=True):
    """A registered client key as stored."""

    key_id: str
    kind: str
    owner_id: str
    parent_id: str | None
    # the JWK as registered (a JSON object of strings); parsed and checked by kit.jwk
    public_jwk: dict[str, str]
    alg: str
    status: str
