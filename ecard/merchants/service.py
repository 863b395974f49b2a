"""Merchants and channels: registration with a public key, entitlements, enabling and disabling."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import asyncpg

from ecard.catalog import Catalog
from ecard.clients import ClientDirectory, ClientKind
from ecard.kit import audit
from ecard.kit.ids import new_id
from ecard.kit.jwk import parse_public_jwk
from ecard.kit.problems import Refusal
from ecard.merchants import store
from ecard.merchants.models import ChannelAnswer, MerchantAnswer

CACHE_TTL_S = 1.0


@dataclass(frozen=True)
class Merchant:
    merchant_id: str
    name: str
    region: str
    status: str
    items: frozenset[str]


def _name(value: str, field: str) -> str:
    value = value.strip()
    if not value or len(value) > 128:
        raise Refusal("invalid_request", f"{field} must be 1 to 128 characters", extra={"fields": [field]})
    return value


def _check_public_key(jwk: Any) -> None:
    """Refuse a key that is not a public Ed25519 or P-256 JWK, naming the field as API.md asks."""
    try:
        parse_public_jwk(jwk)
    except Refusal as refusal:
        raise Refusal(refusal.code, refusal.detail, extra={"fields": ["public_key"]}) from refusal


class Merchants:
    def __init__(self, pool: asyncpg.Pool, directory: ClientDirectory, catalog: Catalog) -> None:
        self._pool = pool
        self._directory = directory
        self._catalog = catalog
        self._cache: dict[str, tuple[float, Merchant | None]] = {}

    async def _check_items(self, items: list[str]) -> list[str]:
        unknown = await self._catalog.known(items)
        if unknown:
            raise Refusal("item_unknown", f"no catalog item has the code(s): {', '.join(sorted(unknown)[:10])}")
        return sorted(set(items))

    async def register(self, actor: str, name: str, region: str, items: list[str], public_key: Any) -> MerchantAnswer:
        name = _name(name, "name")
        region = _name(region, "region")
        _check_public_key(public_key)
        items = await self._check_items(items)
        merchant_id = new_id("mch")
        async with self._pool.acquire() as conn, conn.transaction():
            await store.insert_merchant(conn, merchant_id, name, region)
            await store.set_items(conn, merchant_id, items)
            key_id = await self._directory.register(conn, ClientKind.MERCHANT, merchant_id, public_key)
            await audit.record(conn, actor, "merchant.registered", merchant_id, {"items": items})
        return MerchantAnswer(merchant_id=merchant_id, key_id=key_id, name=name, region=region, items=items)

    async def set_items(self, actor: str, merchant_id: str, items: list[str]) -> Merchant:
        items = await self._check_items(items)
        async with self._pool.acquire() as conn, conn.transaction():
            if await store.merchant(conn, merchant_id) is None:
                raise Refusal("not_found", "no merchant has this id")
            await store.set_items(conn, merchant_id, items)
            await audit.record(conn, actor, "merchant.entitlements", merchant_id, {"items": items})
        self._cache.pop(merchant_id, None)
        return await self._get_fresh(merchant_id)

    async def set_status(self, actor: str, merchant_id: str, status: str) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            if not await store.set_merchant_status(conn, merchant_id, status):
                raise Refusal("not_found", "no merchant has this id")
            await self._directory.set_owner_status(conn, merchant_id, status)
            await audit.record(conn, actor, f"merchant.{status}", merchant_id, {})
        self._cache.pop(merchant_id, None)

    async def _get_fresh(self, merchant_id: str) -> Merchant:
        merchant = await self.get(merchant_id)
        if merchant is None:
            raise Refusal("not_found", "no merchant has this id")
        return merchant

    async def get(self, merchant_id: str) -> Merchant | None:
        """The merchant with its entitlements; cached a second per worker, dropped at once on local change."""
        hit = self._cache.get(merchant_id)
        now = time.monotonic()
        if hit is not None and now - hit[0] < CACHE_TTL_S:
            return hit[1]
        row = await store.merchant(self._pool, merchant_id)
        merchant = (
            Merchant(row["merchant_id"], row["name"], row["region"], row["status"], frozenset(row["items"]))
            if row
            else None
        )
        if len(self._cache) > 100_000:
            self._cache.clear()
        self._cache[merchant_id] = (now, merchant)
        return merchant

    async def register_channel(self, actor: str, name: str, public_key: Any) -> ChannelAnswer:
        name = _name(name, "name")
        _check_public_key(public_key)
        channel_id = new_id("chn")
        async with self._pool.acquire() as conn, conn.transaction():
            await store.insert_channel(conn, channel_id, name)
            key_id = await self._directory.register(conn, ClientKind.CHANNEL, channel_id, public_key)
            await audit.record(conn, actor, "channel.registered", channel_id, {})
        return ChannelAnswer(channel_id=channel_id, key_id=key_id, name=name)

    async def set_channel_status(self, actor: str, channel_id: str, status: str) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            if not await store.set_channel_status(conn, channel_id, status):
                raise Refusal("not_found", "no channel has this id")
            await self._directory.set_owner_status(conn, channel_id, status)
            await audit.record(conn, actor, f"channel.{status}", channel_id, {})
