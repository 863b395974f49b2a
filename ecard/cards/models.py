"""Cardholders, cards and the devices that carry the e-card."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

CardStatus = Literal["active", "suspended", "cancelled"]
# What a notice may say: flat values, never personal data.
NoticeDetail = dict[str, str | int | bool | None]


class NewCardholder(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    id_number: str
    region: str
    card_serial: str


class CardholderAnswer(msgspec.Struct):
    card_id: str
    cardholder_id: str
    card_serial: str
    region: str
    status: str


class IdLookup(msgspec.Struct, forbid_unknown_fields=True):
    id_number: str


class CardSummary(msgspec.Struct):
    card_id: str
    card_serial: str
    region: str
    status: str
    status_reason: str


class CardholderCards(msgspec.Struct):
    cardholder_id: str
    name_masked: str
    cards: list[CardSummary]


class StatusChange(msgspec.Struct, forbid_unknown_fields=True):
    status: CardStatus
    reason: str = ""


class StatusAnswer(msgspec.Struct):
    card_id: str
    status: str


class ReportedLost(msgspec.Struct):
    status: str


class Enrolment(msgspec.Struct, forbid_unknown_fields=True):
    id_number: str
    name: str
    device_public_key: dict[str, Any]
    device_name: str = "device"


class EnrolmentAnswer(msgspec.Struct):
    card_id: str
    device_id: str
    device_key_id: str


class PinChange(msgspec.Struct, forbid_unknown_fields=True):
    """API.md's `{"pin"}` sets a device's first PIN; changing one needs `current_pin`, or a reset grant."""

    pin: str
    current_pin: str | None = None
    reset_token: Annotated[str, msgspec.Meta(min_length=1, max_length=128)] | None = None


class PinResetRequest(msgspec.Struct, forbid_unknown_fields=True):
    """The channel's fresh real-name check of the device's holder."""

    id_number: Annotated[str, msgspec.Meta(max_length=64)]
    name: Annotated[str, msgspec.Meta(max_length=64)]


class PinResetGrant(msgspec.Struct):
    reset_token: str
    expires_at: str


class Notice(msgspec.Struct):
    notice_id: str
    kind: str
    detail: NoticeDetail
    created_at: str


class Notices(msgspec.Struct):
    items: list[Notice]


# --- rows as the store reads them ---------------------------------------------------------------


class HolderRow(msgspec.Struct, frozen=True):
    cardholder_id: str
    name_sealed: bytes


class HolderCardRow(msgspec.Struct, frozen=True):
    """A cardholder found by the blind index of an ID number, with one of its cards (newest first)."""

    id_index: bytes
    cardholder_id: str
    name_sealed: bytes
    card_id: str
    status: str


class CardHolderRow(msgspec.Struct, frozen=True):
    """A card and its holder's sealed identity, for the rooms that compare or tell it."""

    card_id: str
    status: str
    region: str
    cardholder_id: str
    name_sealed: bytes
    id_sealed: bytes
    id_index: bytes


class CardRow(msgspec.Struct, frozen=True):
    card_id: str
    card_serial: str
    region: str
    status: str
    status_reason: str


class CardLock(msgspec.Struct, frozen=True):
    """A card's row, locked for the caller's transaction."""

    card_id: str
    status: str


class DeviceCard(msgspec.Struct, frozen=True):
    """A device, the card it carries, and the device's PIN hash (None before a PIN is set)."""

    device_id: str
    card_id: str
    device_status: str
    card_status: str
    pin_hash: str | None
    pin_pepper: int


class DeviceHolder(msgspec.Struct, frozen=True):
    """A device and whose card it carries, for a channel's real-name check."""

    device_id: str
    card_id: str
    device_status: str
    card_status: str
    cardholder_id: str
    name_sealed: bytes
    id_index: bytes


class PinAttempt(msgspec.Struct, frozen=True):
    """One PIN check, counted before it is made: the card's count with it, its lock, the device's hash."""

    failures: int
    locked_until: datetime | None
    pin_hash: str | None
    pin_pepper: int


class NoticeRow(msgspec.Struct, frozen=True):
    notice_id: str
    kind: str
    detail: NoticeDetail
    created_at: datetime


def mask_name(name: str) -> str:
    """张三 -> 张*, 张小三 -> 张*三, 欧阳小明 -> 欧**明: first and last character only."""
    name = name.strip()
    if len(name) <= 1:
        return "*"
    if len(name) == 2:
        return name[0] + "*"
    return name[0] + "*" * (len(name) - 2) + name[-1]


ID_NUMBER_CHARS = set("0123456789X")


def normalise_id_number(value: str) -> str:
    return value.strip().upper()


def valid_id_number(value: str) -> bool:
    """A resident ID number: 18 characters, the last one a digit or X, with a correct ISO 7064 check digit."""
    if len(value) != 18 or not set(value) <= ID_NUMBER_CHARS or not value[:17].isdigit():
        return False
    return value[17] == check_digit(value[:17])


def check_digit(body: str) -> str:
    """GB 11643's ISO 7064 MOD 11-2 check character of the first 17 digits."""
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    return "10X98765432"[sum(int(d) * w for d, w in zip(body, weights, strict=True)) % 11]


class TicketRequest(msgspec.Struct, forbid_unknown_fields=True):
    """A channel's request for an enrolment ticket, after its own real-name check of the person."""

    id_number: str
    name: str


class TicketAnswer(msgspec.Struct):
    ticket: str
    h5_url: str
    expires_at: str


class TicketedEnrolment(msgspec.Struct, forbid_unknown_fields=True):
    """The citizen page's enrolment: the ticket stands for the channel's signature and its real-name check."""

    ticket: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    device_public_key: dict[str, Any]
    device_name: Annotated[str, msgspec.Meta(max_length=64)] = "H5"


class TicketGrant(msgspec.Struct, frozen=True):
    """What a ticket stands for while it lives in Redis: the person's card, the channel that checked them, and
    until when (the service's clock; Redis forgets the ticket a little later on its own)."""

    card_id: str
    channel_id: str
    expires_at: float
