"""Card lifecycle: registry entries, enrolment of devices, PINs and their resets, loss reports, status, notices."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import asyncpg
import redis.asyncio as aioredis

from ecard.cards import store
from ecard.cards.models import (
    CardholderAnswer,
    CardholderCards,
    CardSummary,
    DeviceCard,
    EnrolmentAnswer,
    HolderCardRow,
    Notice,
    NoticeDetail,
    PinResetGrant,
    TicketAnswer,
    TicketGrant,
    mask_name,
    normalise_id_number,
    valid_id_number,
)
from ecard.clients import ClientDirectory
from ecard.kit import audit
from ecard.kit.clock import Clock, iso, to_datetime
from ecard.kit.crypto import Keys, constant_time_equal
from ecard.kit.ids import id_to_bytes, new_id, random_token
from ecard.kit.infra import Conn
from ecard.kit.jwk import parse_public_jwk
from ecard.kit.passwords import PINS
from ecard.kit.principal import ClientKind, Principal
from ecard.kit.refusal import Refusal

REGIONS = {"cq", "sc", "gz", "xz", "yn"}
# Wrong PINs a card may take (payments and PIN changes alike), and how long the card's PIN is locked after them.
PIN_ATTEMPTS = 5
PIN_LOCK_S = 30 * 60
# A lock this far out is a hold (risk monitoring's escalation): lifted only by a channel's PIN reset.
PIN_HELD_UNTIL = datetime(9999, 1, 1, tzinfo=UTC)
# The PIN hash version new hashes get: Argon2id of the PIN's HMAC under the server's pin key (0: of the bare PIN).
PIN_PEPPER = 1
NOTICES_SHOWN = 100
RESET_TOKEN_PREFIX = "prt_"  # noqa: S105 - a prefix, not a secret
TRANSITIONS = {
    "active": {"active", "suspended", "cancelled"},
    "suspended": {"active", "suspended", "cancelled"},
    "cancelled": {"cancelled"},
}


@dataclass(frozen=True)
class CardState:
    card_id: str
    status: str


class CardSignals(Protocol):
    """Who hears of a card's PIN lockouts and device enrolments (risk monitoring); must not block."""

    def pin_locked(self, card_id: str, at: float) -> None: ...

    def device_enrolled(self, card_id: str, at: float) -> None: ...


@dataclass(frozen=True)
class CardHolder:
    """A card with its holder's identity opened: for the rooms that may tell it (portal claims)."""

    card_id: str
    status: str
    region: str
    cardholder_id: str
    name: str
    id_number: str


def _valid_pin(pin: str) -> bool:
    # isdigit() alone would take any Unicode digit (全角 "４", Arabic-Indic, ...); a PIN pad sends 0-9.
    return len(pin) == 6 and pin.isascii() and pin.isdigit()


def _refuse_unless_active(device: DeviceCard | None) -> DeviceCard:
    if device is None or device.device_status != "active":
        raise Refusal("client_disabled", "this device no longer carries the e-card")
    if device.card_status == "suspended":
        raise Refusal("card_suspended", "the card is suspended")
    if device.card_status == "cancelled":
        raise Refusal("card_cancelled", "the card is cancelled")
    return device


def _attempts_left(failures: int, locked_until: datetime | None) -> int:
    # after a lock has run out the next attempt starts a new series
    return PIN_ATTEMPTS if locked_until is not None else max(PIN_ATTEMPTS - failures, 1)


def _is_id(value: str, prefix: str) -> bool:
    """Whether a value from a URL can be one of our ids (and so goes to the database at all)."""
    try:
        id_to_bytes(value)
    except ValueError:
        return False
    return value.startswith(prefix + "_")


def _check_device_key(jwk: dict[str, Any]) -> None:
    try:
        parse_public_jwk(jwk)
    except Refusal as refusal:
        raise Refusal(refusal.code, refusal.detail, extra={"fields": ["device_public_key"]}) from refusal


def _reset_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True)
class Payee:
    """Whom a disbursement row pays: the blind index of its ID number, and the card, or why none.

    `refusal` is `cardholder_not_found`, `identity_mismatch` or `card_cancelled`; else `card_id` is the card to credit
    (an active one, or a suspended one: a card reported lost keeps its account, and money for its holder still
    comes)."""

    person_index: bytes
    card_id: str | None
    refusal: str | None


# which of a holder's cards receives a payout: an active card before a suspended (reported lost) one
_PAYABLE = ("active", "suspended")


class Cards:
    def __init__(
        self,
        pool: asyncpg.Pool,
        keys: Keys,
        directory: ClientDirectory,
        clock: Clock,
        *,
        pin_reset_ttl_s: int,
        signals: CardSignals | None = None,
    ) -> None:
        self._pool = pool
        self._keys = keys
        self._directory = directory
        self._clock = clock
        self._pin_reset_ttl_s = pin_reset_ttl_s
        self._signals = signals

    def _index(self, id_number: str) -> bytes:
        return self._keys.blind_index(normalise_id_number(id_number))

    def person_index(self, id_number: str) -> bytes:
        """The blind index of an ID number: the same person gives the same bytes, which tell nothing of the number."""
        return self._index(id_number)

    async def payees(self, people: list[tuple[str, str]]) -> list[Payee]:
        """For each (ID number, name): the card a payout to that person goes to, matched as enrolment matches.

        One query for all: by the ID numbers' blind index; the name compared in constant time with the registry's."""
        indexes = [self._index(id_number) for id_number, _ in people]
        by_index: dict[bytes, list[HolderCardRow]] = {}
        for row in await store.holder_cards_by_indexes(self._pool, sorted(set(indexes))):
            by_index.setdefault(row.id_index, []).append(row)
        names: dict[str, str] = {}
        found = []
        for index, (_, name) in zip(indexes, people, strict=True):
            cards = by_index.get(index)
            if not cards:
                found.append(Payee(index, None, "cardholder_not_found"))
                continue
            holder = cards[0].cardholder_id
            if holder not in names:
                names[holder] = self._keys.open_pii(cards[0].name_sealed, f"name:{holder}")
            if not constant_time_equal(names[holder], name.strip()):
                found.append(Payee(index, None, "identity_mismatch"))
                continue
            payable = sorted((c for c in cards if c.status in _PAYABLE), key=lambda c: _PAYABLE.index(c.status))
            if not payable:
                found.append(Payee(index, None, "card_cancelled"))
                continue
            found.append(Payee(index, payable[0].card_id, None))
        return found

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
            found = holder.cardholder_id if holder else "none"
            await audit.record(conn, actor, "cardholder.searched", found, {})
        if holder is None:
            raise Refusal("cardholder_not_found", "no cardholder has this ID number")
        cards = await store.cards_of_holder(self._pool, holder.cardholder_id)
        name = self._keys.open_pii(holder.name_sealed, f"name:{holder.cardholder_id}")
        return CardholderCards(
            cardholder_id=holder.cardholder_id,
            name_masked=mask_name(name),
            cards=[CardSummary(c.card_id, c.card_serial, c.region, c.status, c.status_reason) for c in cards],
        )

    async def set_status(self, actor: str, card_id: str, status: str, reason: str) -> str:
        """Change a card's status; every verification after this reads the new status."""
        async with self._pool.acquire() as conn, conn.transaction():
            found = await store.card_reason_for_update(conn, card_id)
            if found is None:
                raise Refusal("card_not_found", "no card has this id")
            current, current_reason = found
            if status not in TRANSITIONS[current]:
                raise Refusal("card_status_conflict", f"a {current} card cannot become {status}")
            # A suspension for a new reason (a loss report on a card the risk rules suspended) is recorded too, so
            # that clearing the earlier reason does not lift the later one.
            if status != current or (status == "suspended" and reason[:200] != current_reason):
                await store.set_status(conn, card_id, status, reason[:200], actor)
                await audit.record(conn, actor, f"card.{status}", card_id, {"from": current})
        return status

    async def enrol(
        self, channel: Principal, id_number: str, name: str, device_jwk: dict[str, Any], device_name: str
    ) -> EnrolmentAnswer:
        """Bind a device key to the person's active card, after the channel's own real-name check."""
        _check_device_key(device_jwk)
        card_id = await self.card_of(id_number, name)
        return await self.enrol_card(channel.owner_id, card_id, device_jwk, device_name)

    async def enrol_card(
        self, channel_id: str, card_id: str, device_jwk: dict[str, Any], device_name: str, via: str = "channel"
    ) -> EnrolmentAnswer:
        """Bind a (checked) device key to a card the channel `channel_id` matched to its person (now, or by a
        ticket)."""
        device_id = new_id("dev")
        async with self._pool.acquire() as conn, conn.transaction():
            # The e-card lives on one phone at a time: a new enrolment retires the card's older devices.
            # The card's row lock makes concurrent enrolments take turns, so that each sees the one before.
            card = await store.card_for_update(conn, card_id)
            if card is None or card.status != "active":
                raise Refusal("cardholder_not_found", "no active card is registered for this person")
            for old in await store.active_device_keys(conn, card_id):
                await self._directory.set_owner_status(conn, old, "disabled")
            await store.revoke_devices(conn, card_id)
            key_id = await self._directory.register(conn, ClientKind.DEVICE, device_id, device_jwk, parent_id=card_id)
            await store.insert_device(conn, device_id, card_id, channel_id, key_id, device_name.strip()[:64])
            await audit.record(conn, channel_id, "device.enrolled", card_id, {"device_id": device_id, "via": via})
        if self._signals is not None:
            self._signals.device_enrolled(card_id, self._clock.now())
        return EnrolmentAnswer(card_id=card_id, device_id=device_id, device_key_id=key_id)

    async def card_of(self, id_number: str, name: str) -> str:
        """The active card of the person with this ID number (by its blind index) and this real name.

        Raises `cardholder_not_found` (no active card) or `identity_mismatch` (the name differs, compared in
        constant time): enrolment and family links match a person alike."""
        holder = await store.holder_by_index(self._pool, self._index(id_number))
        if holder is None:
            raise Refusal("cardholder_not_found", "no active card is registered for this person")
        cards = [c for c in await store.cards_of_holder(self._pool, holder.cardholder_id) if c.status == "active"]
        if not cards:
            raise Refusal("cardholder_not_found", "no active card is registered for this person")
        stored_name = self._keys.open_pii(holder.name_sealed, f"name:{holder.cardholder_id}")
        if not constant_time_equal(stored_name, name.strip()):
            raise Refusal("identity_mismatch", "the name does not match the card registry")
        return cards[0].card_id

    # --- PINs --------------------------------------------------------------------------------------

    async def set_pin(
        self,
        device: Principal,
        device_id: str,
        pin: str,
        current_pin: str | None = None,
        reset_token: str | None = None,
    ) -> None:
        """Set the device's PIN: the first one as is, a new one with the current PIN or a channel's reset grant.

        Never on a suspended or cancelled card; every change is audited and told to the holder."""
        if device.owner_id != device_id:
            raise Refusal("forbidden", "a device may set its own PIN only")
        if not _valid_pin(pin):
            raise Refusal("invalid_request", "pin must be 6 digits", extra={"fields": ["pin"]})
        if len(set(pin)) == 1 or pin in "0123456789" or pin in "9876543210":
            raise Refusal("invalid_request", "pin is too easy to guess", extra={"fields": ["pin"]})
        if current_pin is not None and reset_token is not None:
            raise Refusal(
                "invalid_request",
                "give current_pin or reset_token, not both",
                extra={"fields": ["current_pin", "reset_token"]},
            )
        if current_pin is not None and not _valid_pin(current_pin):
            raise Refusal("invalid_request", "current_pin must be 6 digits", extra={"fields": ["current_pin"]})
        found = _refuse_unless_active(await store.device_card(self._pool, device_id))
        if reset_token is not None:
            await self._reset_pin(device, found, pin, reset_token)
            return
        if found.pin_hash is None:
            await self._store_pin(device, found, pin, "pin.set", expected_hash=None)
            return
        if current_pin is None:
            # no guess was made, so none is counted: the holder is told what is missing and what is left
            failures, locked_until = await store.pin_guard(self._pool, found.card_id)
            if locked_until is not None and locked_until.timestamp() > self._clock.now():
                raise Refusal("pin_locked", "too many wrong PINs: the card's PIN is locked for 30 minutes")
            raise Refusal(
                "pin_incorrect",
                "the current PIN is needed to change it (current_pin)",
                extra={"attempts_left": _attempts_left(failures, locked_until)},
            )
        # no re-hash of an old hash: the new PIN replaces it at once
        await self.check_pin(
            device, found.card_id, current_pin, purpose="pin_change", subject=found.card_id, rehash=False
        )
        await self._store_pin(device, found, pin, "pin.changed", expected_hash=found.pin_hash)

    async def _store_pin(
        self, device: Principal, found: DeviceCard, pin: str, action: str, *, expected_hash: str | None
    ) -> None:
        pin_hash = await PINS.hash(self._keys.pin_secret(pin))
        now = self._clock.now()
        async with self._pool.acquire() as conn, conn.transaction():
            stored = await store.set_pin(
                conn, found.device_id, pin_hash, PIN_PEPPER, expected_hash=expected_hash, first=expected_hash is None
            )
            if stored:
                await self._record_pin_change(conn, device, found.card_id, action, {}, now)
        if not stored:
            await self._refuse_changed(found)

    async def _refuse_changed(self, found: DeviceCard) -> None:
        """The device, its card or its PIN changed while the new PIN was hashed: refuse as it stands now."""
        again = _refuse_unless_active(await store.device_card(self._pool, found.device_id))
        failures, locked_until = await store.pin_guard(self._pool, again.card_id)
        raise Refusal(
            "pin_incorrect",
            "the PIN was changed meanwhile; give the current one (current_pin)",
            extra={"attempts_left": _attempts_left(failures, locked_until)},
        )

    async def _record_pin_change(
        self, conn: Conn, device: Principal, card_id: str, action: str, detail: NoticeDetail, now: float
    ) -> None:
        await audit.record(conn, f"device:{device.owner_id}", action, card_id, {"device_id": device.owner_id, **detail})
        await self.notify(
            card_id, action.replace(".", "_"), {"device_id": device.owner_id, **detail}, conn=conn, at=now
        )

    async def _reset_pin(self, device: Principal, found: DeviceCard, pin: str, token: str) -> None:
        pin_hash = await PINS.hash(self._keys.pin_secret(pin))
        now = self._clock.now()
        async with self._pool.acquire() as conn, conn.transaction():
            # a grant presented by another device is spent all the same: it has leaked
            spent = await store.spend_reset(conn, _reset_hash(token), to_datetime(now))
            granted = spent is not None and spent[0] == found.device_id
            stored = False
            if spent is not None and granted:
                stored = await store.set_pin(
                    conn,
                    found.device_id,
                    pin_hash,
                    PIN_PEPPER,
                    expected_hash=found.pin_hash,
                    first=found.pin_hash is None,
                )
                if stored:
                    await store.clear_pin_failures(conn, found.card_id)
                    await self._record_pin_change(
                        conn, device, found.card_id, "pin.reset", {"channel_id": spent[1]}, now
                    )
        if not granted:
            raise Refusal("pin_reset_invalid", "the reset grant is unknown, used, expired or for another device")
        if not stored:
            await self._refuse_changed(found)

    async def grant_pin_reset(self, channel: Principal, device_id: str, id_number: str, name: str) -> PinResetGrant:
        """After the channel's fresh real-name check of the device's holder: a short-lived, single-use grant."""
        device = await store.device_holder(self._pool, device_id) if _is_id(device_id, "dev") else None
        if device is None or device.device_status != "active":
            raise Refusal("not_found", "no active device has this id")
        # the person the channel checked must be the card's holder: ID number and name, both, in constant time
        same_person = hmac.compare_digest(self._index(id_number), device.id_index)
        stored_name = self._keys.open_pii(device.name_sealed, f"name:{device.cardholder_id}")
        if not (constant_time_equal(stored_name, name.strip()) and same_person):
            raise Refusal("identity_mismatch", "the person checked is not this device's cardholder")
        if device.card_status == "suspended":
            raise Refusal("card_suspended", "the card is suspended")
        if device.card_status == "cancelled":
            raise Refusal("card_cancelled", "the card is cancelled")
        token = RESET_TOKEN_PREFIX + random_token()
        now = self._clock.now()
        expires = now + self._pin_reset_ttl_s
        async with self._pool.acquire() as conn, conn.transaction():
            await store.insert_reset(
                conn, _reset_hash(token), device_id, channel.owner_id, to_datetime(now), to_datetime(expires)
            )
            detail: NoticeDetail = {"device_id": device_id, "channel_id": channel.owner_id}
            await audit.record(conn, channel.owner_id, "pin.reset_granted", device.card_id, dict(detail))
            await self.notify(device.card_id, "pin_reset_requested", detail, conn=conn, at=now)
        return PinResetGrant(reset_token=token, expires_at=iso(expires))

    async def check_pin(
        self, device: Principal, card_id: str, pin: str, *, purpose: str, subject: str, rehash: bool = True
    ) -> None:
        """The device's PIN, checked for `purpose` (e.g. `payment`); raises `pin_incorrect` or `pin_locked`.

        At most PIN_ATTEMPTS wrong PINs, then the card's PIN is locked for PIN_LOCK_S, whatever it is used for.
        Each attempt is counted before its check, in one statement, so concurrent guesses cannot get past the
        limit; no connection is held while Argon2 runs. Every attempt is audited as `<purpose>.<outcome>` on
        `subject`, and a hash of the bare PIN (before peppering) is re-made peppered at the first right PIN
        (unless `rehash` is False, for a caller about to replace the hash anyway)."""
        now = self._clock.now()
        attempt = await store.count_pin_attempt(self._pool, card_id, device.owner_id, to_datetime(now))
        if attempt is None:
            raise Refusal("client_disabled", "this device no longer carries the e-card")
        rehashed = None
        if (attempt.locked_until is not None and attempt.locked_until.timestamp() > now) or (
            attempt.failures > PIN_ATTEMPTS
        ):
            # locked, or more concurrent attempts than the card has left: refused without a check
            outcome = "pin_refused_locked"
        else:
            secret = self._keys.pin_secret(pin) if attempt.pin_pepper == PIN_PEPPER else pin
            try:
                matched = await PINS.verify(attempt.pin_hash, secret)
            except Refusal:
                # the hashing lane was full: no check was made, so none is counted
                await store.give_back_pin_attempt(self._pool, card_id)
                raise
            if matched and rehash and attempt.pin_pepper != PIN_PEPPER:
                with contextlib.suppress(Refusal):  # a full lane only puts the re-hash off to the next right PIN
                    rehashed = await PINS.hash(self._keys.pin_secret(pin))
            if matched:
                outcome = "pin_correct"
            else:
                outcome = "pin_locked" if attempt.failures >= PIN_ATTEMPTS else "pin_incorrect"
        # the fifth wrong PIN locks; so does an attempt beyond the fifth that finds no lock (the fifth's check
        # never finished: its process died), lest the count stay above the limit for good
        locks = outcome == "pin_locked" or (outcome == "pin_refused_locked" and attempt.locked_until is None)
        locked = False
        async with self._pool.acquire() as conn, conn.transaction():
            if outcome == "pin_correct":
                await store.clear_pin_failures(conn, card_id)
                if rehashed is not None and attempt.pin_hash is not None:
                    await store.rehash_pin(conn, device.owner_id, attempt.pin_hash, rehashed, PIN_PEPPER)
            elif locks and await store.lock_pins(conn, card_id, to_datetime(now + PIN_LOCK_S)):
                locked = True
                await self.notify(card_id, "pin_locked", {"until": iso(now + PIN_LOCK_S)}, conn=conn, at=now)
            await audit.record(conn, f"device:{device.owner_id}", f"{purpose}.{outcome}", subject, {"card_id": card_id})
        if locked and self._signals is not None:
            self._signals.pin_locked(card_id, now)
        if outcome == "pin_correct":
            return
        if outcome == "pin_incorrect":
            raise Refusal(
                "pin_incorrect", "the PIN is not correct", extra={"attempts_left": PIN_ATTEMPTS - attempt.failures}
            )
        if attempt.locked_until is not None and attempt.locked_until >= PIN_HELD_UNTIL:
            raise Refusal("pin_locked", "the card's PIN is locked until the holder re-verifies through a channel")
        raise Refusal("pin_locked", "too many wrong PINs: the card's PIN is locked for 30 minutes")

    async def hold_pin(self, actor: str, card_id: str, detail: NoticeDetail) -> None:
        """Lock the card's PIN (payments, PIN changes) until the holder re-verifies through a channel (a PIN reset).

        Audited, and told to the holder."""
        now = self._clock.now()
        async with self._pool.acquire() as conn, conn.transaction():
            await store.hold_pins(conn, card_id, PIN_ATTEMPTS, PIN_HELD_UNTIL)
            await audit.record(conn, actor, "pin.held", card_id, dict(detail))
            await self.notify(card_id, "pin_held", detail, conn=conn, at=now)

    async def suspend_if_active(self, actor: str, card_id: str, reason: str) -> bool:
        """Suspend an active card (audited); False when the card is not active (or not known)."""
        async with self._pool.acquire() as conn, conn.transaction():
            found = await store.card_reason_for_update(conn, card_id)
            if found is None or found[0] != "active":
                return False
            await store.set_status(conn, card_id, "suspended", reason[:200], actor)
            await audit.record(conn, actor, "card.suspended", card_id, {"from": "active"})
        return True

    async def reactivate_if_suspended_for(self, actor: str, card_id: str, reason: str) -> bool:
        """Reactivate a card still suspended for exactly `reason` (audited); a later suspension (a loss report,
        an operator's) stands, and this answers False."""
        async with self._pool.acquire() as conn, conn.transaction():
            found = await store.card_reason_for_update(conn, card_id)
            if found is None or found != ("suspended", reason[:200]):
                return False
            await store.set_status(conn, card_id, "active", reason[:200], actor)
            await audit.record(conn, actor, "card.active", card_id, {"from": "suspended"})
        return True

    # --- notices -----------------------------------------------------------------------------------

    async def notify(
        self, card_id: str, kind: str, detail: NoticeDetail, *, conn: Conn | None = None, at: float | None = None
    ) -> None:
        """Tell the card's holder something (inside the caller's transaction when `conn` is given).

        `kind` is a lower_snake_case word; `detail` holds ids and times, never personal data."""
        when = to_datetime(self._clock.now() if at is None else at)
        await store.insert_notice(conn or self._pool, new_id("ntc"), card_id, kind, dict(detail), when)

    async def notices(self, device: Principal, card_id: str) -> list[Notice]:
        """What the card's holder has been told, newest first."""
        self._own_card(device, card_id)
        return [
            Notice(notice_id=n.notice_id, kind=n.kind, detail=n.detail, created_at=iso(n.created_at.timestamp()))
            for n in await store.notices_of_card(self._pool, card_id, NOTICES_SHOWN)
        ]

    # --- the holder's card --------------------------------------------------------------------------

    async def report_lost(self, device: Principal, card_id: str) -> str:
        self._own_card(device, card_id)
        return await self.set_status(f"device:{device.owner_id}", card_id, "suspended", "reported lost by holder")

    async def device_card(self, device_id: str) -> CardState:
        """The card a device carries, to mint codes or pay with; refuses suspended and cancelled cards."""
        found = _refuse_unless_active(await store.device_card(self._pool, device_id))
        return CardState(card_id=found.card_id, status=found.card_status)

    async def status_of(self, card_id: str) -> str | None:
        """The card's status, or None when no card has this id."""
        row = await store.holder_of_card(self._pool, card_id)
        return row.status if row is not None else None

    async def holder(self, card_id: str) -> CardHolder | None:
        """The card and its holder's name and ID number, or None when no card has this id."""
        row = await store.holder_of_card(self._pool, card_id)
        if row is None:
            return None
        return CardHolder(
            card_id=row.card_id,
            status=row.status,
            region=row.region,
            cardholder_id=row.cardholder_id,
            name=self._keys.open_pii(row.name_sealed, f"name:{row.cardholder_id}"),
            id_number=self._keys.open_pii(row.id_sealed, f"id:{row.cardholder_id}"),
        )

    async def is_holder(self, card_id: str, name: str, id_number: str) -> bool:
        """Whether this person (by real name and ID number, as another system vouches) holds the card.

        Compared in constant time, by the blind index for the ID number; neither value is kept or logged."""
        row = await store.holder_of_card(self._pool, card_id)
        if row is None:
            return False
        same_id = hmac.compare_digest(self._index(id_number), row.id_index)
        stored_name = self._keys.open_pii(row.name_sealed, f"name:{row.cardholder_id}")
        return constant_time_equal(stored_name, name.strip()) & same_id

    @staticmethod
    def _own_card(device: Principal, card_id: str) -> None:
        if device.parent_id != card_id:
            raise Refusal("forbidden", "a device may act on its own card only")


# --- enrolment tickets (the citizen pages) -------------------------------------------------------------------

TICKET_TTL_S = 300
TICKET_BYTES = 32
# ticketed enrolments are counted per source address over windows this long
REDEEM_WINDOW_S = 300


def _ticket_digest(ticket: str) -> bytes:
    return hashlib.sha256(ticket.encode()).digest()


@dataclass(frozen=True)
class TicketPolicy:
    h5_base: str
    redeems_per_source: int
    prefix: str


class Tickets:
    """A channel's single-use ticket that lets the citizen page enrol its own key for the person the channel
    checked: the ticket stands for the channel's signature and its real-name check, for five minutes, once."""

    def __init__(
        self, pool: asyncpg.Pool, redis: aioredis.Redis, cards: Cards, clock: Clock, policy: TicketPolicy
    ) -> None:
        self._pool = pool
        self._redis = redis
        self._cards = cards
        self._clock = clock
        self._policy = policy

    async def issue(self, channel: Principal, id_number: str, name: str) -> TicketAnswer:
        """After the channel's real-name check: matched exactly as enrolment matches, with its refusals."""
        card_id = await self._cards.card_of(id_number, name)
        ticket = random_token(TICKET_BYTES)
        now = self._clock.now()
        grant = TicketGrant(card_id=card_id, channel_id=channel.owner_id, expires_at=now + TICKET_TTL_S)
        # audited before the ticket exists, so that no ticket ever works unaudited
        async with self._pool.acquire() as conn, conn.transaction():
            await audit.record(conn, channel.owner_id, "enrolment.ticket_issued", card_id, {})
        await store.put_ticket(self._redis, self._policy.prefix, _ticket_digest(ticket), grant, TICKET_TTL_S + 1)
        return TicketAnswer(
            ticket=ticket, h5_url=f"{self._policy.h5_base}/h5/#ticket={ticket}", expires_at=iso(now + TICKET_TTL_S)
        )

    async def redeem(self, ticket: str, device_jwk: dict[str, Any], device_name: str, source: str) -> EnrolmentAnswer:
        """Enrol the page's key with a ticket; a used, unknown or expired ticket is refused alike."""
        now = self._clock.now()
        window = int(now // REDEEM_WINDOW_S)
        source_digest = hashlib.sha256(source.encode()).digest()
        used = await store.count_redeem(self._redis, self._policy.prefix, source_digest, window, 2 * REDEEM_WINDOW_S)
        if used > self._policy.redeems_per_source:
            wait = max(1, int((window + 1) * REDEEM_WINDOW_S - now + 0.999))
            raise Refusal("too_many_requests", "too many enrolments from here; try again later", retry_after=wait)
        _check_device_key(device_jwk)
        grant = await store.take_ticket(self._redis, self._policy.prefix, _ticket_digest(ticket))
        if grant is None or grant.expires_at <= now:
            raise Refusal("ticket_invalid", "the ticket is unknown, used or expired; ask the channel app for a new one")
        return await self._cards.enrol_card(grant.channel_id, grant.card_id, device_jwk, device_name, via="ticket")
