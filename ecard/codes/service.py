"""Issuing dynamic codes to enrolled devices."""

from __future__ import annotations

import os
from dataclasses import dataclass

from ecard.cards import Cards
from ecard.codes import token
from ecard.codes.keys import KeyRing
from ecard.kit.clock import Clock
from ecard.kit.crypto import Keys
from ecard.kit.ids import id_to_bytes
from ecard.kit.principal import Principal


@dataclass(frozen=True)
class IssuedCode:
    code: str
    issued_at: int
    expires_at: int
    refresh_after: int


class CodeIssuer:
    def __init__(self, ring: KeyRing, cards: Cards, keys: Keys, clock: Clock, issuer: str, ttl_s: int) -> None:
        self._ring = ring
        self._cards = cards
        self._keys = keys
        self._clock = clock
        self._issuer = issuer
        self._ttl_s = ttl_s

    async def issue(self, device: Principal) -> IssuedCode:
        card = await self._cards.device_card(device.owner_id)
        key = await self._ring.signing_key(device.nonce)
        if key.private is None:  # pragma: no cover - KeyRing.signing_key() guarantees a private part
            raise RuntimeError("active issuer key has no private part")
        now = int(self._clock.now())
        expires = now + self._ttl_s
        # Sealed afresh with a random nonce for every code: two codes of one card share no bytes (all codes of
        # one epoch share its number, which says nothing about whose they are).
        card_ref = self._keys.seal_card_ref(
            id_to_bytes(card.card_id) + id_to_bytes(device.owner_id), self._issuer, self._ring.card_ref_epoch
        )
        code = token.mint(key.private, key.kid, self._issuer, now, expires, os.urandom(16), card_ref)
        return IssuedCode(code=code, issued_at=now, expires_at=expires, refresh_after=now + (self._ttl_s * 3) // 4)
