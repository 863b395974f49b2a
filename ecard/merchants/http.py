"""Operator HTTP for merchants, their terminals and channels; the public list of venues."""

from __future__ import annotations

import re

from litestar import Controller, get, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody

from ecard.kit.edge import operator_session
from ecard.kit.problems import problems
from ecard.kit.refusal import Refusal
from ecard.merchants.models import (
    ChannelAnswer,
    ClientStatus,
    Entitlements,
    EntitlementsAnswer,
    MerchantAnswer,
    MerchantView,
    NewChannel,
    NewMerchant,
    NewTerminal,
    TerminalAnswer,
    TerminalStatus,
    VenueList,
)
from ecard.merchants.service import Merchants

# what a query value may be before it reaches SQL: PostgreSQL text cannot hold U+0000
_QUERY_VALUE = re.compile(r"[^\x00-\x1f\x7f]{1,64}")


def _query_value(value: str | None, field: str) -> str | None:
    if value is not None and not _QUERY_VALUE.fullmatch(value):
        raise Refusal("invalid_request", f"{field} must be 1 to 64 printable characters", extra={"fields": [field]})
    return value


class MerchantAdminController(Controller):
    path = "/v1/admin"
    tags = ["operators"]  # noqa: RUF012
    dependencies = {"operator": operator_session}  # noqa: RUF012

    @post(
        "/merchants",
        status_code=201,
        summary="Register a merchant with its public key and entitled items",
        responses=problems("unauthorized", "invalid_request", "item_unknown", "entitlement_mismatch"),
    )
    async def register(
        self, merchants: NamedDependency[Merchants], operator: NamedDependency[str], data: JSONBody[NewMerchant]
    ) -> MerchantAnswer:
        return await merchants.register(operator, data.name, data.region, data.items, data.public_key, data.functions)

    @get("/merchants/{merchant_id:str}", summary="A merchant", responses=problems("unauthorized", "not_found"))
    async def one(
        self,
        merchants: NamedDependency[Merchants],
        operator: NamedDependency[str],  # noqa: ARG002 - its presence is the operator guard
        merchant_id: FromPath[str],
    ) -> MerchantView:
        merchant = await merchants.get(merchant_id)
        if merchant is None:
            raise Refusal("not_found", "no merchant has this id")
        return MerchantView(
            merchant_id=merchant.merchant_id,
            name=merchant.name,
            region=merchant.region,
            status=merchant.status,
            functions=sorted(merchant.functions),
            items=sorted(merchant.items),
        )

    @put(
        "/merchants/{merchant_id:str}/items",
        summary="Replace a merchant's entitlements (and, when given, its functions)",
        responses=problems("unauthorized", "invalid_request", "not_found", "item_unknown", "entitlement_mismatch"),
    )
    async def set_items(
        self,
        merchants: NamedDependency[Merchants],
        operator: NamedDependency[str],
        merchant_id: FromPath[str],
        data: JSONBody[Entitlements],
    ) -> EntitlementsAnswer:
        merchant = await merchants.set_items(operator, merchant_id, data.items, data.functions)
        return EntitlementsAnswer(
            merchant_id=merchant.merchant_id, functions=sorted(merchant.functions), items=sorted(merchant.items)
        )

    @post(
        "/merchants/{merchant_id:str}/status",
        status_code=200,
        summary="Enable or disable a merchant and its keys",
        responses=problems("unauthorized", "not_found"),
    )
    async def set_status(
        self,
        merchants: NamedDependency[Merchants],
        operator: NamedDependency[str],
        merchant_id: FromPath[str],
        data: JSONBody[ClientStatus],
    ) -> dict[str, str]:
        await merchants.set_status(operator, merchant_id, data.status)
        return {"merchant_id": merchant_id, "status": data.status}

    @post(
        "/merchants/{merchant_id:str}/terminals",
        status_code=201,
        summary="Register a merchant's terminal with its place and public key",
        responses=problems("unauthorized", "invalid_request", "not_found", "terminal_exists"),
    )
    async def add_terminal(
        self,
        merchants: NamedDependency[Merchants],
        operator: NamedDependency[str],
        merchant_id: FromPath[str],
        data: JSONBody[NewTerminal],
    ) -> TerminalAnswer:
        return await merchants.add_terminal(operator, merchant_id, data.terminal_id, data.place, data.public_key)

    @post(
        "/merchants/{merchant_id:str}/terminals/{terminal_id:str}/status",
        status_code=200,
        summary="Enable or disable one terminal and its key",
        responses=problems("unauthorized", "invalid_request", "not_found"),
    )
    async def set_terminal_status(
        self,
        merchants: NamedDependency[Merchants],
        operator: NamedDependency[str],
        merchant_id: FromPath[str],
        terminal_id: FromPath[str],
        data: JSONBody[ClientStatus],
    ) -> TerminalStatus:
        return await merchants.set_terminal_status(operator, merchant_id, terminal_id, data.status)

    @post(
        "/channels",
        status_code=201,
        summary="Register a channel (an app that vouches for real-name checks)",
        responses=problems("unauthorized", "invalid_request"),
    )
    async def register_channel(
        self, merchants: NamedDependency[Merchants], operator: NamedDependency[str], data: JSONBody[NewChannel]
    ) -> ChannelAnswer:
        return await merchants.register_channel(operator, data.name, data.public_key)

    @post(
        "/channels/{channel_id:str}/status",
        status_code=200,
        summary="Enable or disable a channel and its keys",
        responses=problems("unauthorized", "not_found"),
    )
    async def set_channel_status(
        self,
        merchants: NamedDependency[Merchants],
        operator: NamedDependency[str],
        channel_id: FromPath[str],
        data: JSONBody[ClientStatus],
    ) -> dict[str, str]:
        await merchants.set_channel_status(operator, channel_id, data.status)
        return {"channel_id": channel_id, "status": data.status}


class VenueController(Controller):
    path = "/v1/venues"
    tags = ["catalog"]  # noqa: RUF012

    @get(
        "/",
        summary="Where the card works (服务专区): terminals and merchants, by item and region",
        responses=problems("item_unknown", "invalid_request"),
    )
    async def venues(
        self,
        merchants: NamedDependency[Merchants],
        item_code: FromQuery[str | None] = None,
        region: FromQuery[str | None] = None,
    ) -> VenueList:
        item_code = _query_value(item_code, "item_code")
        region = _query_value(region, "region")
        return VenueList(venues=await merchants.venues(item_code, region))
