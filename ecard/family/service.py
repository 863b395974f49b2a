"""Family accounts (亲情服务): a holder shows a family member's card from the holder's own device."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

import asyncpg
import redis.asyncio as aioredis

from ecard.cards import CardHolder, Cards, mask_name
from ecard.family import store
from ecard.family.models import AddedMember, LinkRow, LinkView
from ecard.kit import audit
from ecard.kit.clock import Clock, iso, to_datetime
from ecard.kit.ids import id_to_bytes, new_id
from ecard.kit.infra import Conn
from ecard.kit.principal import Principal
from ecard.kit.refusal import Refusal

# The national e-SSC's limits per guardian (10 in all), counted over live links (active or pending consent).
LIMITS = {"parent": 4, "child": 3, "spouse": 1, "other": 2}
ADULT_AGE = 16
LINKS_SHOWN = 50
# Birth dates in ID numbers are dates in China (UTC+8, no daylight saving).
CHINA = timezone(timedelta(hours=8))


@dataclass(frozen=True)
class FamilySettings:
    # how long a member who turns 16 keeps a link without consent
    consent_grace_days: int
    # wrong (ID number, name) pairs a guardian may send per window before adds are refused for the rest of it
    match_failures: int
    match_window_s: int
    redis_prefix: str


def birth_date(id_number: str) -> date | None:
    """The birth date in a resident ID number (digits 7 to 14, YYYYMMDD), None when they are not a date."""
    digits = id_number.strip()[6:14]
    if len(digits) != 8 or not digits.isascii() or not digits.isdigit():
        return None
    try:
        return date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
    except ValueError:
        return None


def turns_adult(born: date) -> date:
    """The member's 16th birthday (1 March for someone born on 29 February, in a common year)."""
    try:
        return born.replace(year=born.year + ADULT_AGE)
    except ValueError:
        return date(born.year + ADULT_AGE, 3, 1)


def adult_at(born: date) -> float:
    """The start of the member's 16th birthday in China, as a timestamp."""
    return datetime.combine(turns_adult(born), datetime.min.time(), tzinfo=CHINA).timestamp()


def consent_due(born: date, grace_days: int) -> float:
    """When a minor's link lapses without consent: the end of the grace period after the 16th birthday."""
    return adult_at(born) + grace_days * 86400


def _is_card_id(value: str) -> bool:
    try:
        id_to_bytes(value)
    except ValueError:
        return False
    return value.startswith("crd_")


def _is_link_id(value: str) -> bool:
    try:
        id_to_bytes(value)
    except ValueError:
        return False
    return value.startswith("fam_")


def _own_card(device: Principal, card_id: str) -> str:
    if device.parent_id is None or device.parent_id != card_id:
        raise Refusal("forbidden", "a device may act on its own card only")
    return card_id


def _iso(at: datetime | None) -> str | None:
    return None if at is None else iso(at.timestamp())


class Family:
    def __init__(
        self, pool: asyncpg.Pool, redis: aioredis.Redis, cards: Cards, clock: Clock, settings: FamilySettings
    ) -> None:
        self._pool = pool
        self._redis = redis
        self._cards = cards
        self._clock = clock
        self._settings = settings

    # --- the guardian adds a member -----------------------------------------------------------------

    async def add(self, device: Principal, card_id: str, id_number: str, name: str, relation: str) -> AddedMember:
        """Link a member who holds a card to the guardian's card; active at once for a child under 16."""
        guardian_card = _own_card(device, card_id)
        await self._cards.device_card(device.owner_id)  # the guardian's own card must be usable
        miss_key = f"{self._settings.redis_prefix}family:miss:{guardian_card}"
        count, retry = await store.misses(self._redis, miss_key)
        if count >= self._settings.match_failures:
            raise Refusal(
                "too_many_requests", "too many members who could not be matched: try again later", retry_after=retry
            )
        born = birth_date(id_number)
        if born is None:
            raise Refusal("invalid_request", "id_number is not a resident ID number", extra={"fields": ["id_number"]})
        try:
            member_card = await self._cards.card_of(id_number, name)
        except Refusal as refusal:
            # an add is a look-up of a person by ID number and name: wrong guesses are counted, and limited
            if refusal.code in ("cardholder_not_found", "identity_mismatch"):
                await store.count_miss(self._redis, miss_key, self._settings.match_window_s)
            raise
        if member_card == guardian_card:
            raise Refusal("invalid_request", "a holder cannot be a family member of their own card")
        now = self._clock.now()
        minor = now < adult_at(born)
        row = LinkRow(
            link_id=new_id("fam"),
            guardian_card_id=guardian_card,
            member_card_id=member_card,
            relation=relation,
            status="active" if minor else "pending_consent",
            minor=minor,
            created_at=to_datetime(now),
            consented_at=None,
            ended_at=None,
            ended_by=None,
        )
        async with self._pool.acquire() as conn, conn.transaction():
            await store.lock_guardian(conn, guardian_card)
            counts = await store.live_counts(conn, guardian_card)
            if counts.get(relation, 0) >= LIMITS[relation]:
                raise Refusal(
                    "family_limit",
                    f"at most {LIMITS[relation]} family members of relation {relation}",
                    extra={"relation": relation, "limit": LIMITS[relation]},
                )
            if not await store.insert_link(conn, row):
                raise Refusal("family_link_exists", "this member is already linked to the card")
            detail = {"relation": relation, "status": row.status}
            await audit.record(
                conn,
                f"device:{device.owner_id}",
                "family.link_added",
                row.link_id,
                {"guardian_card_id": guardian_card, "member_card_id": member_card, **detail},
            )
            await self._tell_both(conn, row, "family_link_added", detail, now)
        return AddedMember(link_id=row.link_id, member_card_id=member_card, status=row.status)

    # --- a channel confirms the member's consent ------------------------------------------------------

    async def consent(self, channel: Principal, link_id: str, id_number: str, name: str) -> LinkView:
        """The member's own real-name check, by a channel: the link becomes (or stays) active."""
        found = await store.link(self._pool, link_id) if _is_link_id(link_id) else None
        if found is None:
            raise Refusal("not_found", "no family link has this id")
        if not await self._cards.is_holder(found.member_card_id, name, id_number):
            raise Refusal("identity_mismatch", "the person checked is not this link's member")
        member = await self._holder(found.member_card_id)
        now = self._clock.now()
        async with self._pool.acquire() as conn, conn.transaction():
            link = await store.link(conn, link_id, for_update=True)
            if link is None:  # pragma: no cover - links are never deleted
                raise Refusal("not_found", "no family link has this id")
            turned_adult = link.minor and not self._is_minor(member, now)
            if not (link.status == "pending_consent" or (link.status == "active" and turned_adult)):
                raise Refusal("family_consent_not_pending", f"this link is {link.status} and awaits no consent")
            await store.consent(conn, link_id, channel.owner_id, to_datetime(now))
            await audit.record(
                conn, channel.owner_id, "family.link_consented", link_id, {"member_card_id": link.member_card_id}
            )
            await self._tell_both(conn, link, "family_link_active", {"relation": link.relation}, now)
        return await self._view_for(link_id, side="member")

    # --- either side ends the link --------------------------------------------------------------------

    async def end(self, device: Principal, card_id: str, link_id: str) -> LinkView:
        """The guardian's device or the member's own device ends the link; ending an ended link changes nothing.

        Allowed on a suspended or cancelled card too: ending a link only ever takes a power away."""
        own = _own_card(device, card_id)
        now = self._clock.now()
        async with self._pool.acquire() as conn, conn.transaction():
            link = await store.link(conn, link_id, for_update=True) if _is_link_id(link_id) else None
            if link is None or own not in (link.guardian_card_id, link.member_card_id):
                raise Refusal("not_found", "this card has no family link with this id")
            side = "guardian" if own == link.guardian_card_id else "member"
            if link.status != "ended":
                await store.end(conn, link_id, side, to_datetime(now))
                await audit.record(conn, f"device:{device.owner_id}", "family.link_ended", link_id, {"ended_by": side})
                await self._tell_both(conn, link, "family_link_ended", {"ended_by": side}, now)
        return await self._view_for(link_id, side=side)

    # --- listings, one for each side ------------------------------------------------------------------

    async def members(self, device: Principal, card_id: str) -> list[LinkView]:
        """The members whose cards this card's holder may show, newest first (ended links too)."""
        own = _own_card(device, card_id)
        rows = await store.links_of_guardian(self._pool, own, LINKS_SHOWN)
        return [await self._view(row, "guardian") for row in rows]

    async def guardians(self, device: Principal, card_id: str) -> list[LinkView]:
        """Who may show this card, newest first (ended links too)."""
        own = _own_card(device, card_id)
        rows = await store.links_of_member(self._pool, own, LINKS_SHOWN)
        return [await self._view(row, "member") for row in rows]

    # --- codes: the codes room asks whether a guardian's device may show a card -----------------------

    async def link_to(self, guardian: Principal, card_id: str) -> bytes:
        """The 16 bytes of the live link from the guardian's card to `card_id`, to seal into a code in place of a
        device id. Refuses when there is no link (`forbidden`), it ended (`family_link_ended`), it awaits consent
        (`family_consent_required`), or the member's card is not active."""
        row = None
        if guardian.parent_id is not None and _is_card_id(card_id):
            row = await store.newest_link(self._pool, guardian.parent_id, card_id)
        if row is None:
            raise Refusal("forbidden", "this device may show its own card and its family members' only")
        if row.status == "ended":
            raise Refusal("family_link_ended", "the family link to this card has ended")
        member = await self._holder(card_id)
        row = await self._settle_age(row, member)
        if row.status == "pending_consent":
            raise Refusal("family_consent_required", "the member's consent, confirmed by a channel, is needed first")
        if member.status == "suspended":
            raise Refusal("card_suspended", "the card is suspended")
        if member.status == "cancelled":
            raise Refusal("card_cancelled", "the card is cancelled")
        return id_to_bytes(row.link_id)

    # --- inside ---------------------------------------------------------------------------------------

    async def _holder(self, card_id: str) -> CardHolder:
        holder = await self._cards.holder(card_id)
        if holder is None:  # pragma: no cover - a link's cards are never deleted
            raise Refusal("card_not_found", "no card has this id")
        return holder

    @staticmethod
    def _is_minor(member: CardHolder, now: float) -> bool:
        born = birth_date(member.id_number)
        return born is not None and now < adult_at(born)

    async def _settle_age(self, row: LinkRow, member: CardHolder) -> LinkRow:
        """A minor's link past the consent grace after the 16th birthday lapses to pending consent, once."""
        born = birth_date(member.id_number)
        if not (row.minor and row.status == "active" and born is not None):
            return row
        now = self._clock.now()
        if now < consent_due(born, self._settings.consent_grace_days):
            return row
        async with self._pool.acquire() as conn, conn.transaction():
            if await store.lapse(conn, row.link_id):
                await audit.record(conn, "family", "family.consent_lapsed", row.link_id, {})
                await self._tell_both(conn, row, "family_consent_needed", {"relation": row.relation}, now)
        # as it stands now: lapsed by this request or another, or consented meanwhile
        return await store.link(self._pool, row.link_id) or row

    async def _tell_both(self, conn: Conn, row: LinkRow, kind: str, detail: dict[str, str], now: float) -> None:
        for card_id, side in ((row.guardian_card_id, "guardian"), (row.member_card_id, "member")):
            await self._cards.notify(card_id, kind, {"link_id": row.link_id, "side": side, **detail}, conn=conn, at=now)

    async def _view_for(self, link_id: str, side: str) -> LinkView:
        row = await store.link(self._pool, link_id)
        if row is None:  # pragma: no cover - links are never deleted
            raise Refusal("not_found", "no family link has this id")
        return await self._view(row, side)

    async def _view(self, row: LinkRow, side: str) -> LinkView:
        other = await self._holder(row.member_card_id if side == "guardian" else row.guardian_card_id)
        member = other if side == "guardian" else await self._holder(row.member_card_id)
        row = await self._settle_age(row, member)
        due = None
        born = birth_date(member.id_number)
        if row.minor and row.status == "active" and born is not None and not self._is_minor(member, self._clock.now()):
            due = iso(consent_due(born, self._settings.consent_grace_days))
        return LinkView(
            link_id=row.link_id,
            relation=row.relation,
            status=row.status,
            guardian_card_id=row.guardian_card_id,
            member_card_id=row.member_card_id,
            name_masked=mask_name(other.name),
            created_at=iso(row.created_at.timestamp()),
            consented_at=_iso(row.consented_at),
            ended_at=_iso(row.ended_at),
            ended_by=row.ended_by,
            consent_due_at=due,
        )
