"""Card lifecycle: registry entries, enrolment of devices, PINs, loss reports and status."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

from ecard.cards import store
from ecard.cards.models import (
    CardholderAnswer,
    CardholderCards,
    CardSummary,
    EnrolmentAnswer,
    mask_name,
    normalise_id_number,
    valid_id_number,
)
from ecard.clients import ClientDirectory
from ecard.kit import audit
from ecard.kit.crypto import Keys, constant_time_equal
from ecard.kit.ids import new_id
from ecard.kit.jwk import parse_public_jwk
from ecard.kit.passwords import PINS
from ecard.kit.principal import ClientKind, Principal
from ecard.kit.refusal import Refusal

REGIONS = {"cq", "sc", "gz", "xz", "yn"}
TRANSITIONS = {
    "active": {"active", "suspended", "cancelled"},
    "suspended": {"active", "suspended", "cancelled"},
    "cancelled": {"cancelled"},
}


@dataclass(frozen=True)
class CardState:
    card_id: str
    status: str


class Cards:
    def __init__(self, pool: asyncpg.Pool, keys: Keys, directory: ClientDirectory) -> None:
        self._pool = pool
        self._keys = keys
        self._directory = directory

    def _index(self, id_number: str) -> bytes:
        return self._keys.blind_index(normalise_id_number(id_number))

    async def register(self, actor: str, name: str, id_number: str, region: str, card_serial: str) -> CardholderAnswer:
        """A card from the registry; a person already known gets a further card under the same cardholder."""
        id_number = normalise_id_number(id_number)
        if not valid_id_number(id_number):
            raise Refusal(
                "invalid_request",
                "id_number is not a valid resident ID number",
                extra={"fields": ["id_number"]},
            )
        if not name.strip() or len(name) > 64:
            raise Refusal("invalid_request", "name must be 1 to 64 characters", extra={"fields": ["name"]})
        if region not in REGIONS:
            raise Refusal("invalid_request", f"region must be one of {sorted(REGIONS)}", extra={"fields": ["region"]})
        if not card_serial.strip() or len(card_serial) > 64:
            raise Refusal(
                "invalid_request", "card_serial must be 1 to 64 characters", extra={"fields": ["card_serial"]}
            )
        proposed = new_id("hld")
        card_id = new_id("crd")
        async with self._pool.acquire() as conn, conn.transaction():
            holder_id = await store.insert_holder(
                conn,
                proposed,
                self._keys.seal_pii(name.strip(), f"name:{proposed}"),
                self._keys.seal_pii(id_number, f"id:{proposed}"),
                self._index(id_number),
            )
            if not await store.insert_card(conn, card_id, holder_id, card_serial.strip(), region):
                raise Refusal("card_serial_taken", "a card with this serial is already registered")
            await audit.record(conn, actor, "card.registered", card_id, {"cardholder_id": holder_id})
        return CardholderAnswer(
            card_id=card_id,
            cardholder_id=holder_id,
            card_serial=card_serial.strip(),
            region=region,
            status="active",
        )

    async def find(self, actor: str, id_number: str) -> CardholderCards:
        """An operator's look-up by ID number; every look-up is audited, found or not."""
        holder = await store.holder_by_index(self._pool, self._index(id_number))
        async with self._pool.acquire() as conn, conn.transaction():
            found = holder["cardholder_id"] if holder else "none"
            await audit.record(conn, actor, "cardholder.searched", found, {})
        if holder is None:
            raise Refusal("cardholder_not_found", "no cardholder has this ID number")
        cards = await store.cards_of_holder(self._pool, holder["cardholder_id"])
        name = self._keys.open_pii(bytes(holder["name_sealed"]), f"name:{holder['cardholder_id']}")
        return CardholderCards(
            cardholder_id=holder["cardholder_id"],
            name_masked=mask_name(name),
            cards=[
                CardSummary(c["card_id"], c["card_serial"], c["region"], c["status"], c["status_reason"]) for c in cards
            ],
        )

    async def set_status(self, actor: str, card_id: str, status: str, reason: str) -> str:
        """Change a card's status; every verification after this reads the new status."""
        async with self._pool.acquire() as conn, conn.transaction():
            card = await store.card_for_update(conn, card_id)
            if card is None:
                raise Refusal("card_not_found", "no card has this id")
            if status not in TRANSITIONS[card["status"]]:
                raise Refusal("card_status_conflict", f"a {card['status']} card cannot become {status}")
            if status != card["status"]:
                await store.set_status(conn, card_id, status, reason[:200], actor)
                await audit.record(conn, actor, f"card.{status}", card_id, {"from": card["status"]})
        return status

    async def enrol(
        self, channel: Principal, id_number: str, name: str, device_jwk: dict[str, Any], device_name: str
    ) -> EnrolmentAnswer:
        """Bind a device key to the person's active card, after the channel's own real-name check."""
        try:
            parse_public_jwk(device_jwk)
        except Refusal as refusal:
            raise Refusal(refusal.code, refusal.detail, extra={"fields": ["device_public_key"]}) from refusal
        holder = await store.holder_by_index(self._pool, self._index(id_number))
        if holder is None:
            raise Refusal("cardholder_not_found", "no active card is registered for this person")
        cards = [c for c in await store.cards_of_holder(self._pool, holder["cardholder_id"]) if c["status"] == "active"]
        if not cards:
            raise Refusal("cardholder_not_found", "no active card is registered for this person")
        stored_name = self._keys.open_pii(bytes(holder["name_sealed"]), f"name:{holder['cardholder_id']}")
        if not constant_time_equal(stored_name, name.strip()):
            raise Refusal("identity_mismatch", "the name does not match the card registry")
        card_id = cards[0]["card_id"]
        device_id = new_id("dev")
        async with self._pool.acquire() as conn, conn.transaction():
            # The e-card lives on one phone at a time: a new enrolment retires the card's older devices.
            # The card's row lock makes concurrent enrolments take turns, so that each sees the one before.
            card = await store.card_for_update(conn, card_id)
            if card is None or card["status"] != "active":
                raise Refusal("cardholder_not_found", "no active card is registered for this person")
            for old in await store.active_device_keys(conn, card_id):
                await self._directory.set_owner_status(conn, old, "disabled")
            await store.revoke_devices(conn, card_id)
            key_id = await self._directory.register(conn, ClientKind.DEVICE, device_id, device_jwk, parent_id=card_id)
            await store.insert_device(conn, device_id, card_id, channel.owner_id, key_id, device_name.strip()[:64])
            await audit.record(conn, channel.owner_id, "device.enrolled", card_id, {"device_id": device_id})
        return EnrolmentAnswer(card_id=card_id, device_id=device_id, device_key_id=key_id)

    async def set_pin(self, device: Principal, device_id: str, pin: str) -> None:
        if device.owner_id != device_id:
            raise Refusal("forbidden", "a device may set its own PIN only")
        # isdigit() alone would take any Unicode digit (全角 "４", Arabic-Indic, ...); a PIN pad sends 0-9.
        if len(pin) != 6 or not (pin.isascii() and pin.isdigit()):
            raise Refusal("invalid_request", "pin must be 6 digits", extra={"fields": ["pin"]})
        if len(set(pin)) == 1 or pin in "0123456789" or pin in "9876543210":
            raise Refusal("invalid_request", "pin is too easy to guess", extra={"fields": ["pin"]})
        await store.set_pin(self._pool, device_id, await PINS.hash(pin))

    async def report_lost(self, device: Principal, card_id: str) -> str:
        self._own_card(device, card_id)
        return await self.set_status(f"device:{device.owner_id}", card_id, "suspended", "reported lost by holder")

    async def device_card(self, device_id: str) -> CardState:
        """The card a device carries, for code issuance; refuses suspended and cancelled cards."""
        row = await store.device_card(self._pool, device_id)
        if row is None or row["device_status"] != "active":
            raise Refusal("client_disabled", "this device no longer carries the e-card")
        if row["card_status"] == "suspended":
            raise Refusal("card_suspended", "the card is suspended")
        if row["card_status"] == "cancelled":
            raise Refusal("card_cancelled", "the card is cancelled")
        return CardState(card_id=row["card_id"], status=row["card_status"])

    async def payer(self, device_id: str) -> tuple[CardState, str | None]:
        """The card a device pays with and the device's PIN hash; refuses suspended and cancelled cards."""
        row = await store.device_pin(self._pool, device_id)
        if row is None or row["device_status"] != "active":
            raise Refusal("client_disabled", "this device no longer carries the e-card")
        if row["card_status"] == "suspended":
            raise Refusal("card_suspended", "the card is suspended")
        if row["card_status"] == "cancelled":
            raise Refusal("card_cancelled", "the card is cancelled")
        return CardState(card_id=row["card_id"], status=row["card_status"]), row["pin_hash"]

    @staticmethod
    def _own_card(device: Principal, card_id: str) -> None:
        if device.parent_id != card_id:
            raise Refusal("forbidden", "a device may act on its own card only")
