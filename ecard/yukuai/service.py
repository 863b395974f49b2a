"""渝快码 links: the holder's consent binds the card to a 渝快办 account; a linked 渝快码 then verifies as the card."""

from __future__ import annotations

from typing import Any

import asyncpg

from ecard.kit import audit
from ecard.kit.clock import Clock, iso, to_datetime
from ecard.kit.ids import new_id
from ecard.kit.principal import Principal
from ecard.kit.refusal import Refusal
from ecard.yukuai import store
from ecard.yukuai.adapter import YukuaiPlatform
from ecard.yukuai.models import LinkAnswer


def _answer(row: dict[str, Any]) -> LinkAnswer:
    revoked = row["revoked_at"]
    return LinkAnswer(
        card_id=row["card_id"],
        account_id=row["account_id"],
        status="linked" if revoked is None else "revoked",
        consent_version=row["consent_version"],
        consented_at=iso(row["consented_at"].timestamp()),
        revoked_at=iso(revoked.timestamp()) if revoked is not None else None,
    )


class YukuaiLinks:
    """Links and the resolution of 渝快码 at e-card terminals (the `LinkedCodes` of verification)."""

    def __init__(
        self, pool: asyncpg.Pool, platform: YukuaiPlatform, clock: Clock, prefix: str, consent_version: str
    ) -> None:
        self._pool = pool
        self._platform = platform
        self._clock = clock
        self.prefix = prefix
        self._consent_version = consent_version

    @staticmethod
    def _own_card(device: Principal, card_id: str) -> None:
        if device.parent_id != card_id:
            raise Refusal("forbidden", "a device may act on its own card only")

    async def link(self, device: Principal, card_id: str, account_id: str, consent: bool) -> LinkAnswer:
        self._own_card(device, card_id)
        if not consent:
            raise Refusal("consent_required", "linking needs the holder's consent", extra={"fields": ["consent"]})
        status = await store.card_status(self._pool, card_id)
        if status == "suspended":
            raise Refusal("card_suspended", "the card is suspended")
        if status == "cancelled":
            raise Refusal("card_cancelled", "the card is cancelled")
        existing = await store.active_link_of_card(self._pool, card_id)
        if existing is not None:
            if existing["account_id"] == account_id:
                return _answer(existing)  # asked again: the same link, consent unchanged
            raise Refusal("link_exists", "this card is linked to another 渝快办 account; revoke that link first")
        if await self._platform.account(account_id) is None:
            raise Refusal("account_not_found", "the 渝快办 platform has no such account")
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
        account_id = await self._platform.resolve(code)
        card_id = await store.linked_card(self._pool, account_id)
        if card_id is None:
            raise Refusal("card_not_linked", "the holder has not linked (or has unlinked) this 渝快办 account")
        return card_id
