"""Merchants (venues, 协约商户), their terminals and places, and the catalog items they are entitled to."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

Function = Literal["identity", "disbursement", "payment"]
Functions = Annotated[list[Function], msgspec.Meta(min_length=1)]
# PostgreSQL text cannot hold U+0000, and names shown to citizens have no business with control characters.
Label = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]+$")]
Text = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")]
# District and region codes as the catalog and cards write them: wulong, cq, sc, ...
Region = Annotated[str, msgspec.Meta(min_length=1, max_length=32, pattern=r"^[a-z][a-z0-9_-]*$")]
Latitude = Annotated[float, msgspec.Meta(ge=-90, le=90)]
Longitude = Annotated[float, msgspec.Meta(ge=-180, le=180)]


class NewMerchant(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    region: str
    items: list[str]
    public_key: dict[str, Any]
    # left out: the functions of its items, so that API.md's request registers a merchant for any items
    functions: Functions | None = None


class MerchantAnswer(msgspec.Struct):
    merchant_id: str
    key_id: str
    name: str
    region: str
    items: list[str]
    functions: list[str]
    status: str = "active"


class MerchantView(msgspec.Struct):
    merchant_id: str
    name: str
    region: str
    status: str
    functions: list[str]
    items: list[str]


class EntitlementsAnswer(msgspec.Struct):
    merchant_id: str
    functions: list[str]
    items: list[str]


class Entitlements(msgspec.Struct, forbid_unknown_fields=True):
    items: list[str]
    # when given, the merchant's functions change with its items, checked together
    functions: Functions | None = None


class ClientStatus(msgspec.Struct, forbid_unknown_fields=True):
    status: Literal["active", "disabled"]
    reason: str = ""


class NewChannel(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    public_key: dict[str, Any]


class ChannelAnswer(msgspec.Struct):
    channel_id: str
    key_id: str
    name: str


class Place(msgspec.Struct, forbid_unknown_fields=True):
    name: Text
    address: Text
    region: Region
    lat: Latitude
    lon: Longitude


class NewTerminal(msgspec.Struct, forbid_unknown_fields=True):
    terminal_id: Label
    place: Place
    public_key: dict[str, Any]


class TerminalAnswer(msgspec.Struct):
    key_id: str
    terminal_id: str
    merchant_id: str
    place: Place
    status: str = "active"


class TerminalStatus(msgspec.Struct):
    merchant_id: str
    terminal_id: str
    status: str


class Venue(msgspec.Struct):
    """Where the card works: a merchant's terminal at its place, or a merchant without terminals in its region."""

    merchant_id: str
    merchant_name: str
    terminal_id: str | None
    region: str
    place: Place | None
    items: list[str]


class VenueList(msgspec.Struct):
    venues: list[Venue]
