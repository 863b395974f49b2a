"""Verification, the hot path, in DESIGN's order; every refusal is a stable code."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from ecard.cards import mask_name
from ecard.catalog import Catalog
from ecard.clients import ClientKind, Principal
from ecard.codes import KeyRing, check_signature, decode
from ecard.kit.clock import Clock, to_datetime
from ecard.kit.crypto import Keys, SealError
from ecard.kit.ids import id_from_bytes, id_to_bytes, new_id
from ecard.kit.problems import Refusal
from ecard.merchants import Merchants
from ecard.risk import RiskEvents
from ecard.verify import store


@dataclass(frozen=True)
class Verification:
    verification_id: str
    item_code: str
    verified_at: float
    card: dict[str, str]


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


def _open_reference(deps: VerifyDeps, sealed: bytes) -> tuple[str, str]:
    try:
        plain = deps.keys.open_card_ref(sealed, deps.issuer)
    except SealError as exc:
        raise Refusal("malformed_code", "the code's card reference does not open") from exc
    if len(plain) != 32:
        raise Refusal("malformed_code", "the code's card reference has the wrong length")
    return id_from_bytes("crd", plain[:16]), id_from_bytes("dev", plain[16:])


async def verify(
    principal: Principal,
    code: str,
    item_code: str,
    terminal_id: str | None,
    place: dict[str, Any] | None,
    deps: VerifyDeps,
) -> Verification:
    merchant_id = principal.parent_id if principal.kind is ClientKind.TERMINAL else principal.owner_id
    if merchant_id is None:  # pragma: no cover - terminals always belong to a merchant
        raise Refusal("forbidden", "this key belongs to no merchant")
    if principal.kind is ClientKind.TERMINAL:
        terminal_id, place = await _registered_terminal(principal, terminal_id, deps)
    token = decode(code)
    if token.issuer != deps.issuer:
        raise Refusal("unknown_issuer", "this code comes from an issuer this service does not know")
    key = await deps.ring.for_kid(token.kid)
    if key is None:
        raise Refusal("unknown_key", "no published issuer key has this kid")
    if key.status == "revoked":
        raise Refusal("key_revoked", "the key that signed this code has been revoked")
    check_signature(token, key.public)
    now = deps.clock.now()
    if now > token.expires_at + deps.skew_s:
        raise Refusal("code_expired", "the code has expired; ask the holder to refresh it")
    if now < token.issued_at - deps.skew_s:
        raise Refusal("code_not_yet_valid", "the code is not valid yet; check the terminal's clock")
    # A terminal's mistake about the item must not burn the holder's code, so the item is checked before the claim.
    item = await deps.catalog.item(item_code, to_datetime(now).date())
    if item is None:
        raise Refusal("item_unknown", "no catalog item in force has this code")
    if "electronic" not in item.card_modes:
        raise Refusal("card_mode_not_accepted", "this item accepts the physical card only")
    cti_key = f"{deps.prefix}cti:{token.cti.hex()}"
    nonce_fresh, revoked, fresh = await store.claim(
        deps.redis,
        principal.nonce,
        deps.ring.revoked_flag(token.kid),
        cti_key,
        (token.expires_at + deps.skew_s + 1) * 1000,
    )
    if not nonce_fresh:
        # a replayed request: it must not have taken the code it carries
        if fresh:
            await store.release(deps.redis, cti_key)
        raise Refusal("nonce_reused", "this nonce has been used already")
    if revoked:
        raise Refusal("key_revoked", "the key that signed this code has been revoked")
    card_id, _device_id = _open_reference(deps, token.card_ref)
    if not fresh:
        await deps.risk.replay(card_id, merchant_id, token.cti.hex())
        raise Refusal("code_already_used", "this code has been used already")
    verification_id = new_id("vrf")
    try:
        merchant = await deps.merchants.get(merchant_id)
        entitled = merchant is not None and merchant.status == "active" and item.item_code in merchant.items
        row = await store.record(
            deps.pool,
            card_id,
            verification_id,
            merchant_id,
            item.item_code,
            terminal_id,
            place,
            list(item.discloses),
            token.cti,
            to_datetime(now),
            entitled,
        )
    except asyncpg.UniqueViolationError as exc:
        # recorded by an earlier attempt whose answer was lost (the claim was released, the row had committed)
        raise Refusal("code_already_used", "this code has been used already") from exc
    except Exception:
        # An outage is no answer about the code: release the claim so the terminal's retry can still use it.
        await store.release(deps.redis, cti_key)
        raise
    if row is None:
        raise Refusal("malformed_code", "the code names no card")
    if row["status"] == "suspended":
        raise Refusal("card_suspended", "the card is suspended")
    if row["status"] == "cancelled":
        raise Refusal("card_cancelled", "the card is cancelled")
    if row["verification_id"] is None:
        raise Refusal("merchant_not_entitled", "this merchant is not entitled to this catalog item")
    return Verification(
        verification_id=verification_id,
        item_code=item.item_code,
        verified_at=now,
        card=_disclose(deps, row, item.discloses, merchant_id),
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


def _disclose(deps: VerifyDeps, row: dict[str, Any], discloses: tuple[str, ...], merchant_id: str) -> dict[str, str]:
    """Exactly what the catalog item allows, plus the issuing region."""
    holder = row["cardholder_id"]
    card: dict[str, str] = {"region": row["region"]}
    name = None
    for attribute in discloses:
        if attribute == "pseudonym":
            card["pseudonym"] = deps.keys.pseudonym(id_to_bytes(merchant_id), id_to_bytes(holder))
        elif attribute in ("name", "name_masked"):
            name = name or deps.keys.open_pii(bytes(row["name_sealed"]), f"name:{holder}")
            card[attribute] = name if attribute == "name" else mask_name(name)
        elif attribute == "id_number":
            card["id_number"] = deps.keys.open_pii(bytes(row["id_sealed"]), f"id:{holder}")
    return card
