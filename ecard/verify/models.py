"""Verification requests and answers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import msgspec

from ecard.kit.clock import iso
from ecard.kit.refusal import Refusal

REFUSALS = (
    "malformed_code",
    "unknown_issuer",
    "unknown_key",
    "key_revoked",
    "bad_signature",
    "code_expired",
    "code_not_yet_valid",
    "code_already_used",
    "card_suspended",
    "card_cancelled",
    "item_unknown",
    "card_mode_not_accepted",
    "merchant_not_entitled",
    "item_not_in_joint_list",
    "card_not_linked",
    "family_link_ended",
    "family_consent_required",
    "forbidden",
    "issuer_unavailable",
    "database_unavailable",
    "cache_unavailable",
)


@dataclass(frozen=True)
class Verification:
    verification_id: str
    item_code: str
    verified_at: float
    card: dict[str, str]


@dataclass(frozen=True)
class Venue:
    """Who checks the code: one of our merchants (or its terminal), or a partner issuer's merchant."""

    merchant_id: str
    merchant_name: str
    region: str
    terminal_id: str | None
    place: dict[str, Any] | None
    # the partner issuer whose merchant this is; None for our own
    via_issuer: str | None = None


Text = Annotated[str, msgspec.Meta(min_length=1, max_length=2048)]
ShortText = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
# PostgreSQL text and jsonb cannot hold U+0000, and a terminal id has no business with control characters.
TerminalId = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]+$")]


class VerificationRequest(msgspec.Struct, forbid_unknown_fields=True):
    code: Text
    item_code: ShortText
    terminal_id: TerminalId | None = None
    place: dict[str, Any] | None = None


class VerificationAnswer(msgspec.Struct):
    result: str
    verification_id: str
    item_code: str
    verified_at: str
    card: dict[str, str]


class HistoryEntry(msgspec.Struct):
    verification_id: str
    merchant_name: str
    item_code: str
    item_name: str
    disclosed: list[str]
    verified_at: str
    terminal_id: str | None = None
    place: dict[str, Any] | None = None
    # the partner issuer (e.g. sc) whose merchant checked the card; None when it was one of ours
    via_issuer: str | None = None
    # "family" when a family member showed the card from their own device, with their relation to the holder
    via: str | None = None
    relation: str | None = None


class History(msgspec.Struct):
    items: list[HistoryEntry]


# --- rows as the store reads them ---------------------------------------------------------------


class RecordedCard(msgspec.Struct, frozen=True):
    """The card a code names, as the recording statement read it, and the verification if it was recorded."""

    card_id: str
    status: str
    region: str
    cardholder_id: str
    name_sealed: bytes
    id_sealed: bytes
    # the status of the family link the code names; None for the holder's own code
    family_status: str | None
    verification_id: str | None


class VerificationRow(msgspec.Struct, frozen=True):
    verification_id: str
    merchant_id: str
    # the partner's merchant's name, for a verification decided for a partner issuer's merchant
    merchant_name: str | None
    item_code: str
    disclosed: list[str]
    verified_at: datetime
    terminal_id: str | None
    place: dict[str, Any] | None
    via_issuer: str | None
    family_relation: str | None


def storable(value: Any) -> bool:
    """True when no string in a JSON value (keys included) holds U+0000, which PostgreSQL's jsonb refuses."""
    pending = [value]
    while pending:  # a loop, not recursion: the value's depth is the client's choice
        item = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return False
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return True


def accepted(result: Verification) -> VerificationAnswer:
    """The answer of an accepted verification, the same wherever it was decided."""
    return VerificationAnswer(
        result="accepted",
        verification_id=result.verification_id,
        item_code=result.item_code,
        verified_at=iso(result.verified_at),
        card=result.card,
    )


def check_place(place: dict[str, Any] | None) -> None:
    if place is not None and not storable(place):
        raise Refusal("invalid_request", "place must not contain U+0000", extra={"fields": ["place"]})
