"""A machine client's own key pair and the key id the service gave it: what the tests and the load tool sign with."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from ecard.kit.jwk import ALG_ED25519, ALG_P256, PrivateKey, public_jwk


@dataclass
class ClientKey:
    key: PrivateKey
    key_id: str = ""
    # what the service answered about this client (merchant_id, device_id, card_id, ...)
    ids: dict[str, str] = field(default_factory=dict)

    @property
    def alg(self) -> str:
        return ALG_ED25519 if isinstance(self.key, ed25519.Ed25519PrivateKey) else ALG_P256

    @property
    def jwk(self) -> dict[str, str]:
        return public_jwk(self.key.public_key())

    @classmethod
    def ed25519(cls) -> ClientKey:
        return cls(ed25519.Ed25519PrivateKey.generate())

    @classmethod
    def p256(cls) -> ClientKey:
        return cls(ec.generate_private_key(ec.SECP256R1()))


def made_up_id_number(rng: random.Random | None = None) -> str:
    """A resident ID number that passes the check-digit test but belongs to nobody: for demos, tests and load."""
    from ecard.cards.models import check_digit  # noqa: PLC0415

    rng = rng or random.Random()
    body = f"500101{rng.randint(1950, 2005)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}{rng.randint(0, 999):03d}"
    return body + check_digit(body)
