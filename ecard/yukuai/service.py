"""渝快码 links: the holder's consent binds the card to a 渝快办 account; a linked 渝快码 then verifies as the card."""

from __future__ import annotations

import hmac

import asyncpg

from ecard.cards import Cards
from ecard.kit import audit
from ecard.kit.clock import Clock, iso, to_datetime
from ecard.kit.ids import new_id
from ecard.kit.principal import Principal
from ecard.kit.refusal import Refusal
from ecard.yukuai import store
from ecard.yukuai.adapter import YukuaiPlatform
from ecard.yukuai.models import LinkAnswer


def _answer(row: store.LinkRow) -> LinkAnswer:
    return LinkAnswer(
        card_id=row.card_id,
        account_id=row.account_id,
        status="linked" if row.revoked_at is None else "revoked",
        consent_version=row.consent_version,
        consented_at=iso(row.consented_at.timestamp()),
        revoked_at=iso(row.revoked_at.timestamp()) if row.revoked_at is not None else None,
    )


class YukuaiLinks:
    """Links and the resolution of 渝快码 at e-card terminals (the `LinkedCodes` of verification).

    `platform` is None when no 渝快办 platform is configured: then nothing can be linked or resolved."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        platform: YukuaiPlatform | None,
        cards: Cards,
        clock: Clock,
        prefix: str,
        consent_version: str,
    ) -> None:
        self._pool = pool
        self._platform = platform
        self._cards = cards
        self._clock = clock
        self.prefix = prefix
        self._consent_version = consent_version

    @staticmethod
    def _own_card(device: Principal, card_id: str) -> None:
        if device.parent_id != card_id:
            raise Refusal("forbidden", "a device may act on its own card only")

    def _configured(self) -> YukuaiPlatform:
        if self._platform is None:
            raise Refusal("issuer_unavailable", "no 渝快办 platform is configured (ECARD_YUKUAI_URL)")
        return self._platform

    async def link(
        self, device: Principal, card_id: str, account_id: str, consent: bool, link_token: str | None
    ) -> LinkAnswer:
        """Link the card to the account the platform vouches for, held by the card's own holder.

        The link token is the platform's word that its logged-in user owns `account_id`; the real name it gives
        for the account must be the card holder's. Without both, anyone could link their card to anyone's
        account, and read that person's movements in their own card's history."""
        self._own_card(device, card_id)
        if not consent:
            raise Refusal("consent_required", "linking needs the holder's consent", extra={"fields": ["consent"]})
        if link_token is None:
            raise Refusal(
                "link_token_required",
                "linking needs a link token from the 渝快办 app, issued for this account to its logged-in user",
                extra={"fields": ["link_token"]},
            )
        platform = self._configured()
        status = await self._cards.status_of(card_id)
        if status == "suspended":
            raise Refusal("card_suspended", "the card is suspended")
        if status == "cancelled":
            raise Refusal("card_cancelled", "the card is cancelled")
        proof = await platform.redeem_link_token(link_token)
        if not hmac.compare_digest(proof.account_id.encode(), account_id.encode()):
            raise Refusal(
                "link_token_invalid",
                "the link token was issued for another 渝快办 account",
                extra={"fields": ["link_token"]},
            )
        if not await self._cards.is_holder(card_id, proof.name, proof.id_number):
            async with self._pool.acquire() as conn, conn.transaction():
                await audit.record(conn, device.key_id, "yukuai.link_refused", card_id, {"why": "identity_mismatch"})
            raise Refusal("identity_mismatch", "the 渝快办 account belongs to someone other than the card's holder")
        existing = await store.active_link_of_card(self._pool, card_id)
        if existing is not None:
            if existing.account_id == account_id:
                return _answer(existing)  # asked again: the same link, consent unchanged
            raise Refusal("link_exists", "this card is linked to another 渝快办 account; revoke that link first")
        async with self._pool.acquire() as conn, conn.transaction():
            row = await store.insert_link(
                conn, new_id("lnk"), card_id, account_id, self._consent_version, to_datetime(self._clock.now())
            )
            if row is None:
                raise Refusal("link_exists", "this 渝快办 account or card is linked already")
            await audit.record(
                conn, device.key_id, "yukuai.linked", card_id, {"consent_version": self._consent_version}
            )
        return _answer(row)

    async def unlink(self, device: Principal, card_id: str) -> LinkAnswer:
        self._own_card(device, card_id)
        async with self._pool.acquire() as conn, conn.transaction():
            row = await store.revoke_link(conn, card_id, to_datetime(self._clock.now()))
            if row is None:
                raise Refusal("not_found", "this card has no 渝快办 link")
            await audit.record(conn, device.key_id, "yukuai.unlinked", card_id, {})
        return _answer(row)

    async def card_of(self, code: str) -> str:
        """The card a 渝快码 stands for: the platform names the account, the holder's link names the card."""
        account_id = await self._configured().resolve(code)
        card_id = await store.linked_card(self._pool, account_id)
        if card_id is None:
            raise Refusal("card_not_linked", "the holder has not linked (or has unlinked) this 渝快办 account")
        return card_id
