"""Verification, the hot path, in DESIGN's order; every refusal is a stable code."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg
import redis.asyncio as aioredis

from ecard.cards import mask_name
from ecard.catalog import Catalog, Item
from ecard.codes import KeyRing, NumericCodes, Token, check_signature, decode, is_numeric_form
from ecard.kit import cache
from ecard.kit.clock import Clock, iso, to_datetime
from ecard.kit.crypto import Keys, SealError
from ecard.kit.groupcommit import GroupCommit
from ecard.kit.ids import id_from_bytes, id_to_bytes, new_id
from ecard.kit.principal import ClientKind, NonceClaim, Principal
from ecard.kit.refusal import Refusal
from ecard.merchants import Merchant, Merchants
from ecard.risk import RiskEvents, Verified
from ecard.verify import store
from ecard.verify.models import HistoryEntry, PaidIn, RecordedCard, TimelineEntry, Venue, Verification

HISTORY_SHOWN = 100


class Forwarder(Protocol):
    """Verification by the issuer of a partner's code (the federation room)."""

    async def forward(self, token: Token, code: str, item: Item, venue: Venue, now: float) -> Verification: ...


class LinkedCodes(Protocol):
    """Codes of another platform (the 渝快码) that resolve to one of our cards through a consented link."""

    prefix: str

    async def card_of(self, code: str) -> str: ...


class Payout(Protocol):
    """One payment into the holder's card account, as the disbursement room lists it."""

    @property
    def payer_name(self) -> str: ...
    @property
    def item_code(self) -> str: ...
    @property
    def item_name(self) -> str: ...
    @property
    def amount_fen(self) -> int: ...
    @property
    def memo(self) -> str: ...
    @property
    def paid_at(self) -> str: ...


class Payouts(Protocol):
    """What was paid into a card (the disbursement room), for the holder's timeline."""

    async def for_holder(self, device: Principal, card_id: str) -> Sequence[Payout]: ...


@dataclass(frozen=True)
class VerifyDeps:
    pool: asyncpg.Pool
    redis: aioredis.Redis
    keys: Keys
    ring: KeyRing
    catalog: Catalog
    merchants: Merchants
    risk: RiskEvents
    clock: Clock
    issuer: str
    skew_s: int
    prefix: str
    # the durable records of verifications, written in groups (store.verification_records)
    records: GroupCommit[store.NewRecord, RecordedCard | None]
    forwarder: Forwarder | None = None
    linked: LinkedCodes | None = None
    # where reads that tolerate lag go (the holder's history): a streaming replica, or None for `pool`
    replica: asyncpg.Pool | None = None
    # payments into the card's account, shown beside its verifications in the holder's timeline
    payouts: Payouts | None = None
    # the 18-digit codes (ecard/codes): resolved to their live record before the same single-use claim as EC1
    numeric: NumericCodes | None = None


async def _open_reference(deps: VerifyDeps, sealed: bytes) -> tuple[str, bytes]:
    try:
        plain = await deps.ring.open_card_ref(sealed)
    except SealError as exc:
        raise Refusal("malformed_code", "the code's card reference does not open") from exc
    if len(plain) != 32:
        raise Refusal("malformed_code", "the code's card reference has the wrong length")
    # the card, and who showed it: the holder's device, or the family link of a guardian's device (ecard/family)
    return id_from_bytes("crd", plain[:16]), plain[16:]


async def verify(
    principal: Principal,
    code: str,
    item_code: str,
    terminal_id: str | None,
    place: dict[str, Any] | None,
    deps: VerifyDeps,
) -> Verification:
    """A code checked at one of our merchants or terminals: ours, a partner's, or a linked platform's."""
    merchant_id = principal.parent_id if principal.kind is ClientKind.TERMINAL else principal.owner_id
    if merchant_id is None:  # pragma: no cover - terminals always belong to a merchant
        raise Refusal("forbidden", "this key belongs to no merchant")
    registered = principal.kind is ClientKind.TERMINAL
    if registered:
        terminal_id, place = await _registered_terminal(principal, terminal_id, deps)
    now = deps.clock.now()
    if deps.linked is not None and code.startswith(deps.linked.prefix):
        item = await _item(deps, item_code, now)
        merchant = await _entitled_merchant(deps, merchant_id, item)
        venue = Venue(merchant_id, merchant.name, merchant.region, terminal_id, place, registered_place=registered)
        return await _linked(principal, code, item, venue, now, deps)
    if deps.numeric is not None and is_numeric_form(code):
        venue = Venue(merchant_id, "", "", terminal_id, place, registered_place=registered)
        return await _numeric(principal, code, item_code, venue, now, deps)
    token = decode(code)
    if token.issuer != deps.issuer:
        if deps.forwarder is None:
            raise Refusal("unknown_issuer", "this code comes from an issuer this service does not know")
        item = await _item(deps, item_code, now)
        merchant = await _entitled_merchant(deps, merchant_id, item)
        await _claim_nonce(deps, principal.nonce)
        venue = Venue(merchant_id, merchant.name, merchant.region, terminal_id, place)
        return await deps.forwarder.forward(token, code, item, venue, now)
    await _check_token(deps, token, now)
    item = await _item(deps, item_code, now)
    venue = Venue(merchant_id, "", "", terminal_id, place, registered_place=registered)
    return await _decide(token, item, venue, principal.nonce, now, deps)


async def verify_for_partner(
    nonce: NonceClaim | None, code: str, item_code: str, venue: Venue, partner_region: str, deps: VerifyDeps
) -> Verification:
    """A code of ours checked at a partner issuer's merchant: we decide status, single use and disclosure."""
    now = deps.clock.now()
    token = decode(code)
    if token.issuer != deps.issuer:
        raise Refusal("unknown_issuer", "this issuer decides only for its own codes")
    await _check_token(deps, token, now)
    item = await _item(deps, item_code, now)
    if deps.issuer not in item.regions or partner_region not in item.regions:
        raise Refusal("item_not_in_joint_list", "this item is not on the joint list shared with that issuer")
    return await _decide(token, item, venue, nonce, now, deps)


async def _check_token(deps: VerifyDeps, token: Token, now: float) -> None:
    key = await deps.ring.for_kid(token.kid)
    if key is None:
        raise Refusal("unknown_key", "no published issuer key has this kid")
    if key.status == "revoked":
        raise Refusal("key_revoked", "the key that signed this code has been revoked")
    check_signature(token, key.public)
    if now > token.expires_at + deps.skew_s:
        raise Refusal("code_expired", "the code has expired; ask the holder to refresh it")
    if now < token.issued_at - deps.skew_s:
        raise Refusal("code_not_yet_valid", "the code is not valid yet; check the terminal's clock")


async def _item(deps: VerifyDeps, item_code: str, now: float) -> Item:
    # A terminal's mistake about the item must not burn the holder's code, so the item is checked before the claim.
    item = await deps.catalog.item(item_code, to_datetime(now).date())
    if item is None:
        raise Refusal("item_unknown", "no catalog item in force has this code")
    if "electronic" not in item.card_modes:
        raise Refusal("card_mode_not_accepted", "this item accepts the physical card only")
    return item


async def _entitled_merchant(deps: VerifyDeps, merchant_id: str, item: Item) -> Merchant:
    merchant = await deps.merchants.get(merchant_id)
    if merchant is None or merchant.status != "active" or item.item_code not in merchant.items:
        raise Refusal("merchant_not_entitled", "this merchant is not entitled to this catalog item")
    return merchant


async def _claim_nonce(deps: VerifyDeps, nonce: NonceClaim | None) -> None:
    if not await store.claim_nonce(deps.redis, nonce, cache.new_token()):
        raise Refusal("nonce_reused", "this nonce has been used already")


async def _decide(
    token: Token, item: Item, venue: Venue, nonce: NonceClaim | None, now: float, deps: VerifyDeps
) -> Verification:
    """Single use, card status, entitlement, record, disclosure: for a code this issuer made."""
    cti_key = store.code_claim_key(deps.prefix, token.cti)
    mine = cache.new_token()
    nonce_fresh, revoked, fresh = await store.claim(
        deps.redis,
        nonce,
        deps.ring.revoked_flag(token.kid, token.cti),
        cti_key,
        (token.expires_at + deps.skew_s + 1) * 1000,
        mine,
    )
    if not nonce_fresh:
        # a replayed request: it must not have taken the code it carries
        if fresh:
            await store.release(deps.redis, cti_key, mine)
        raise Refusal("nonce_reused", "this nonce has been used already")
    if revoked:
        raise Refusal("key_revoked", "the key that signed this code has been revoked")
    card_id, shown_by = await _open_reference(deps, token.card_ref)
    if not fresh:
        await deps.risk.replay(card_id, venue.merchant_id, token.cti.hex())
        raise Refusal("code_already_used", "this code has been used already")
    family_link = id_from_bytes("fam", shown_by)
    return await _record(card_id, token.cti, (cti_key, mine), item, venue, now, deps, family_link=family_link)


async def _numeric(
    principal: Principal, code: str, item_code: str, venue: Venue, now: float, deps: VerifyDeps
) -> Verification:
    """An 18-digit code: its handle names the live record (one read), its TOTP digits prove the device."""
    assert deps.numeric is not None
    record = await deps.numeric.resolve(code, principal.owner_id, now)
    item = await _item(deps, item_code, now)
    cti_key = store.code_claim_key(deps.prefix, record.cti)
    mine = cache.new_token()
    nonce_fresh, fresh = await store.claim_with_nonce(
        deps.redis, principal.nonce, cti_key, (record.expires_at + deps.skew_s + 1) * 1000, mine
    )
    if not nonce_fresh:
        if fresh:
            await store.release(deps.redis, cti_key, mine)
        raise Refusal("nonce_reused", "this nonce has been used already")
    if not fresh:
        await deps.risk.replay(record.card_id, venue.merchant_id, record.cti.hex())
        raise Refusal("code_already_used", "this code has been used already")
    family_link = id_from_bytes("fam", record.shown_by)
    return await _record(record.card_id, record.cti, (cti_key, mine), item, venue, now, deps, family_link=family_link)


async def verify_offline_tap(
    terminal: Principal, code: str, item_code: str, tapped_at: float, grace_s: int, deps: VerifyDeps
) -> Verification:
    """An EC1 code an offline terminal accepted at `tapped_at`, judged as of then: the card's status at that moment,
    single use against every verification recorded so far, the expiry stretched by the offline grace."""
    merchant_id = terminal.parent_id
    if terminal.kind is not ClientKind.TERMINAL or merchant_id is None:
        raise Refusal("forbidden", "only a registered terminal uploads offline taps")
    terminal_id, place = await _registered_terminal(terminal, None, deps)
    token = decode(code)
    if token.issuer != deps.issuer:
        raise Refusal("unknown_issuer", "offline taps are taken for this issuer's own codes only")
    key = await deps.ring.for_kid(token.kid)
    if key is None:
        raise Refusal("unknown_key", "no published issuer key has this kid")
    if key.status == "revoked":
        raise Refusal("key_revoked", "the key that signed this code has been revoked")
    check_signature(token, key.public)
    if tapped_at > token.expires_at + grace_s:
        raise Refusal("code_expired", "the code had expired (beyond the offline grace) when it was tapped")
    if tapped_at < token.issued_at - deps.skew_s:
        raise Refusal("code_not_yet_valid", "the tap is earlier than the code; check the terminal's clock")
    item = await _item(deps, item_code, tapped_at)
    card_id, shown_by = await _open_reference(deps, token.card_ref)
    merchant = await deps.merchants.get(merchant_id)
    entitled = merchant is not None and merchant.status == "active" and item.item_code in merchant.items
    verification_id = new_id("vrf")
    try:
        row = await store.record_as_of(
            deps.pool,
            card_id,
            verification_id,
            merchant_id,
            item.item_code,
            terminal_id,
            place,
            list(item.discloses),
            token.cti,
            to_datetime(tapped_at),
            entitled,
            id_from_bytes("fam", shown_by),
        )
    except asyncpg.UniqueViolationError as exc:
        await deps.risk.raise_event("offline_double_tap", card_id, merchant_id, {"cti": token.cti.hex()})
        raise Refusal("code_already_used", "this code had been used already") from exc
    if row is None:
        raise Refusal("malformed_code", "the code names no card")
    if row.status in ("suspended", "cancelled"):
        detail = {"cti": token.cti.hex(), "status": row.status, "terminal_id": terminal_id}
        await deps.risk.raise_event("offline_tap_blocked_card", card_id, merchant_id, detail)
        raise Refusal(f"card_{row.status}", f"the card was {row.status} when it was tapped")
    if row.family_status == "ended":
        raise Refusal("family_link_ended", "the family link this code was shown through has ended")
    if row.family_status == "pending_consent":
        raise Refusal("family_consent_required", "the family link this code was shown through awaits consent")
    if row.verification_id is None:
        raise Refusal("merchant_not_entitled", "this merchant is not entitled to this catalog item")
    return Verification(verification_id, item.item_code, tapped_at, {})


async def _linked(
    principal: Principal, code: str, item: Item, venue: Venue, now: float, deps: VerifyDeps
) -> Verification:
    """A linked platform's code: its platform says whose it is (and that it is fresh), the link says which card."""
    assert deps.linked is not None
    await _claim_nonce(deps, principal.nonce)
    card_id = await deps.linked.card_of(code)
    cti = hashlib.sha256(code.encode()).digest()[:16]
    cti_key = store.code_claim_key(deps.prefix, cti)
    mine = cache.new_token()
    if not await store.claim_code(deps.redis, cti_key, 24 * 3600, mine):
        await deps.risk.replay(card_id, venue.merchant_id, cti.hex())
        raise Refusal("code_already_used", "this code has been used already")
    return await _record(card_id, cti, (cti_key, mine), item, venue, now, deps)


async def _record(
    card_id: str,
    cti: bytes,
    claimed: tuple[str, bytes],
    item: Item,
    venue: Venue,
    now: float,
    deps: VerifyDeps,
    *,
    family_link: str | None = None,
) -> Verification:
    """`claimed`: the code's claim (key, token), given back when the outcome is unknown."""
    verification_id = new_id("vrf")
    try:
        if venue.via_issuer is None:
            merchant = await deps.merchants.get(venue.merchant_id)
            entitled = merchant is not None and merchant.status == "active" and item.item_code in merchant.items
        else:
            entitled = True  # the partner's own instance checked its merchant's entitlement before asking
        row = await deps.records.record(
            store.NewRecord(
                card_id,
                verification_id,
                venue.merchant_id,
                item.item_code,
                venue.terminal_id,
                venue.place,
                list(item.discloses),
                cti,
                to_datetime(now),
                entitled,
                venue.via_issuer,
                venue.merchant_name if venue.via_issuer is not None else None,
                family_link,
            )
        )
    except asyncpg.UniqueViolationError as exc:
        # recorded by an earlier attempt whose answer was lost (the claim was released, the row had committed)
        raise Refusal("code_already_used", "this code has been used already") from exc
    except Exception:
        # An outage is no answer about the code: release the claim so the terminal's retry can still use it.
        await store.release(deps.redis, *claimed)
        raise
    if row is None:
        raise Refusal("malformed_code", "the code names no card")
    if row.status == "suspended":
        raise Refusal("card_suspended", "the card is suspended")
    if row.status == "cancelled":
        raise Refusal("card_cancelled", "the card is cancelled")
    if row.family_status == "ended":
        raise Refusal("family_link_ended", "the family link this code was shown through has ended")
    if row.family_status == "pending_consent":
        raise Refusal("family_consent_required", "the family link this code was shown through awaits consent")
    if row.verification_id is None:
        raise Refusal("merchant_not_entitled", "this merchant is not entitled to this catalog item")
    deps.risk.verified(_seen(card_id, item, venue, now))
    return Verification(
        verification_id=verification_id,
        item_code=item.item_code,
        verified_at=now,
        card=_disclose(deps, row, item.discloses, venue),
    )


def _seen(card_id: str, item: Item, venue: Venue, now: float) -> Verified:
    """The accepted verification as the risk rules see it (they run later, off this answer's path)."""
    lat = lon = None
    if venue.registered_place and venue.place is not None:
        lat, lon = venue.place.get("lat"), venue.place.get("lon")
    return Verified(
        card_id=card_id,
        merchant_id=venue.merchant_id,
        item_code=item.item_code,
        discloses_identity="name" in item.discloses or "id_number" in item.discloses,
        lat=float(lat) if isinstance(lat, int | float) else None,
        lon=float(lon) if isinstance(lon, int | float) else None,
        at=now,
    )


async def _registered_terminal(
    principal: Principal, claimed_id: str | None, deps: VerifyDeps
) -> tuple[str, dict[str, Any]]:
    """A terminal is recorded under the id and place it was registered with, whatever its body says.

    Checked before the code is looked at, so a misconfigured terminal does not burn the holder's code.
    """
    terminal = await deps.merchants.terminal(principal.owner_id)
    if terminal is None:  # pragma: no cover - a terminal key is only ever registered with its terminal
        raise Refusal("forbidden", "this terminal key belongs to no registered terminal")
    if claimed_id is not None and claimed_id != terminal.terminal_id:
        raise Refusal("forbidden", "a terminal verifies under its own terminal_id only")
    return terminal.terminal_id, terminal.place


def _disclose(deps: VerifyDeps, row: RecordedCard, discloses: tuple[str, ...], venue: Venue) -> dict[str, str]:
    """Exactly what the catalog item allows, plus the issuing region."""
    holder = row.cardholder_id
    card: dict[str, str] = {"region": row.region}
    name = None
    # a partner's merchant is scoped by its issuer too, so that no two merchants anywhere share a pseudonym
    scope = id_to_bytes(venue.merchant_id) if venue.via_issuer is None else venue.merchant_id.encode()
    for attribute in discloses:
        if attribute == "pseudonym":
            card["pseudonym"] = deps.keys.pseudonym(scope, id_to_bytes(holder))
        elif attribute in ("name", "name_masked"):
            name = name or deps.keys.open_pii(row.name_sealed, f"name:{holder}")
            card[attribute] = name if attribute == "name" else mask_name(name)
        elif attribute == "id_number":
            card["id_number"] = deps.keys.open_pii(row.id_sealed, f"id:{holder}")
    return card


async def history(device: Principal, card_id: str, deps: VerifyDeps) -> list[HistoryEntry]:
    """Every verification of the holder's own card, newest first: who, where, when, which item, what was disclosed."""
    if device.parent_id != card_id:
        raise Refusal("forbidden", "a device may act on its own card only")
    rows = await store.verifications_of_card(deps.replica or deps.pool, card_id, HISTORY_SHOWN)
    item_names = {item.item_code: item.name for item in await deps.catalog.items()}
    # a partner's merchant under the name the partner sent, ours under its name today
    merchant_names: dict[str, str] = {}
    for row in rows:
        if row.via_issuer is not None:
            merchant_names[row.verification_id] = row.merchant_name or ""
        else:
            merchant = await deps.merchants.get(row.merchant_id)
            merchant_names[row.verification_id] = merchant.name if merchant is not None else ""
    return [
        HistoryEntry(
            verification_id=row.verification_id,
            merchant_name=merchant_names[row.verification_id],
            item_code=row.item_code,
            item_name=item_names.get(row.item_code, row.item_code),
            disclosed=list(row.disclosed),
            verified_at=iso(row.verified_at.timestamp()),
            terminal_id=row.terminal_id,
            place=row.place,
            via_issuer=row.via_issuer,
            via="family" if row.family_relation is not None else None,
            relation=row.family_relation,
        )
        for row in rows
    ]


async def timeline(device: Principal, card_id: str, deps: VerifyDeps) -> list[TimelineEntry]:
    """The holder's history with the disbursements paid into the card beside the verifications, newest first."""
    entries = [
        TimelineEntry("verification", e.verified_at, verification=e) for e in await history(device, card_id, deps)
    ]
    if deps.payouts is not None:
        entries += [
            TimelineEntry(
                "disbursement",
                p.paid_at,
                disbursement=PaidIn(p.payer_name, p.item_code, p.item_name, p.amount_fen, p.memo),
            )
            for p in await deps.payouts.for_holder(device, card_id)
        ]
    # ISO 8601 in UTC sorts as text
    return sorted(entries, key=lambda e: e.at, reverse=True)
