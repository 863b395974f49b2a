"""Cardholders, cards and the devices that carry the e-card."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

CardStatus = Literal["active", "suspended", "cancelled"]


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
    pin: str


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
