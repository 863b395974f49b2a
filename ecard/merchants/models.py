"""Merchants (venues, 协约商户) and the catalog items they are entitled to."""

from __future__ import annotations

from typing import Any, Literal

import msgspec


class NewMerchant(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    region: str
    items: list[str]
    public_key: dict[str, Any]


class MerchantAnswer(msgspec.Struct):
    merchant_id: str
    key_id: str
    name: str
    region: str
    items: list[str]
    status: str = "active"


class Entitlements(msgspec.Struct, forbid_unknown_fields=True):
    items: list[str]


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
