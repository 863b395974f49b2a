"""Issuing dynamic codes to enrolled devices."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Protocol

from ecard.cards import Cards
from ecard.codes import token
from ecard.codes.keys import KeyRing
from ecard.kit.clock import Clock
from ecard.kit.crypto import Keys
from ecard.kit.ids import id_to_bytes
from ecard.kit.principal import Principal
from ecard.kit.refusal import Refusal


@dataclass(frozen=True)
class IssuedCode:
    code: str
    issued_at: int
    expires_at: int
    refresh_after: int


class Delegations(Protocol):
    """Whose cards other than its own a device may show (the family room)."""

    async def link_to(self, guardian: Principal, card_id: str) -> bytes:
        """The 16 bytes to seal with `card_id` in place of a device id; raises a Refusal when it may not."""
        ...


class CodeIssuer:
    def __init__(
        self,
        ring: KeyRing,
        cards: Cards,
        keys: Keys,
        clock: Clock,
        issuer: str,
        ttl_s: int,
        delegations: Delegations | None = None,
    ) -> None:
        self._delegations = delegations
        self._ring = ring
        self._cards = cards
        self._keys = keys
        self._clock = clock
        self._issuer = issuer
        self._ttl_s = ttl_s

    async def issue(self, device: Principal, card_id: str | None = None) -> IssuedCode:
        """A code for the device's own card, or for `card_id`: a card the device may show for its holder."""
        card = await self._cards.device_card(device.owner_id)
        shown, subject = card.card_id, id_to_bytes(device.owner_id)
        if card_id is not None and card_id != card.card_id:
            if self._delegations is None:
                raise Refusal("forbidden", "a device may show its own card only")
            # A family member's code seals the link in place of a device: the same length, opened only by the
            # issuer, so nothing in the code tells it from the member's own or ties it to the guardian.
            shown, subject = card_id, await self._delegations.link_to(device, card_id)
        key = await self._ring.signing_key(device.nonce)
        if key.private is None:  # pragma: no cover - KeyRing.signing_key() guarantees a private part
            raise RuntimeError("active issuer key has no private part")
        now = int(self._clock.now())
        expires = now + self._ttl_s
        # Sealed afresh with a random nonce for every code: two codes of one card share no bytes (all codes of
        # one epoch share its number, which says nothing about whose they are).
        card_ref = self._keys.seal_card_ref(id_to_bytes(shown) + subject, self._issuer, self._ring.card_ref_epoch)
        code = token.mint(key.private, key.kid, self._issuer, now, expires, os.urandom(16), card_ref)
        return IssuedCode(code=code, issued_at=now, expires_at=expires, refresh_after=now + (self._ttl_s * 3) // 4)
