"""Operator HTTP for merchants and channels."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from ecard.kit.problems import Refusal, problems
from ecard.merchants.models import (
    ChannelAnswer,
    ClientStatus,
    Entitlements,
    MerchantAnswer,
    NewChannel,
    NewMerchant,
)
from ecard.merchants.service import Merchants
from ecard.operators import operator_session


def _merchants(request: Request[Any, Any, Any]) -> Merchants:
    merchants: Merchants = request.app.state.merchants
    return merchants


class MerchantAdminController(Controller):
    path = "/v1/admin"
    tags = ["operators"]  # noqa: RUF012
    dependencies = {"operator": operator_session}  # noqa: RUF012

    @post(
        "/merchants",
        status_code=201,
        summary="Register a merchant with its public key and entitled items",
        responses=problems("unauthorized", "invalid_request", "item_unknown"),
    )
    async def register(
        self, request: Request[Any, Any, Any], operator: NamedDependency[str], data: JSONBody[NewMerchant]
    ) -> MerchantAnswer:
        return await _merchants(request).register(operator, data.name, data.region, data.items, data.public_key)

    @get("/merchants/{merchant_id:str}", summary="A merchant", responses=problems("unauthorized", "not_found"))
    async def one(
        self,
        request: Request[Any, Any, Any],
        operator: NamedDependency[str],  # noqa: ARG002 - its presence is the operator guard
        merchant_id: FromPath[str],
    ) -> dict[str, Any]:
        merchant = await _merchants(request).get(merchant_id)
        if merchant is None:
            raise Refusal("not_found", "no merchant has this id")
        return {
            "merchant_id": merchant.merchant_id,
            "name": merchant.name,
            "region": merchant.region,
            "status": merchant.status,
            "items": sorted(merchant.items),
        }

    @put(
        "/merchants/{merchant_id:str}/items",
        summary="Replace a merchant's entitlements",
        responses=problems("unauthorized", "not_found", "item_unknown"),
    )
    async def set_items(
        self,
        request: Request[Any, Any, Any],
        operator: NamedDependency[str],
        merchant_id: FromPath[str],
        data: JSONBody[Entitlements],
    ) -> dict[str, Any]:
        merchant = await _merchants(request).set_items(operator, merchant_id, data.items)
        return {"merchant_id": merchant.merchant_id, "items": sorted(merchant.items)}

    @post(
        "/merchants/{merchant_id:str}/status",
        status_code=200,
        summary="Enable or disable a merchant and its keys",
        responses=problems("unauthorized", "not_found"),
    )
    async def set_status(
        self,
        request: Request[Any, Any, Any],
        operator: NamedDependency[str],
        merchant_id: FromPath[str],
        data: JSONBody[ClientStatus],
    ) -> dict[str, str]:
        await _merchants(request).set_status(operator, merchant_id, data.status)
        return {"merchant_id": merchant_id, "status": data.status}

    @post(
        "/channels",
        status_code=201,
        summary="Register a channel (an app that vouches for real-name checks)",
        responses=problems("unauthorized", "invalid_request"),
    )
    async def register_channel(
        self, request: Request[Any, Any, Any], operator: NamedDependency[str], data: JSONBody[NewChannel]
    ) -> ChannelAnswer:
        return await _merchants(request).register_channel(operator, data.name, data.public_key)

    @post(
        "/channels/{channel_id:str}/status",
        status_code=200,
        summary="Enable or disable a channel and its keys",
        responses=problems("unauthorized", "not_found"),
    )
    async def set_channel_status(
        self,
        request: Request[Any, Any, Any],
        operator: NamedDependency[str],
        channel_id: FromPath[str],
        data: JSONBody[ClientStatus],
    ) -> dict[str, str]:
        await _merchants(request).set_channel_status(operator, channel_id, data.status)
        return {"channel_id": channel_id, "status": data.status}
