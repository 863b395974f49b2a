"""Merchants and channels: keys, functions and entitlements, terminals and places, enabling and disabling."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from ecard.catalog import Catalog
from ecard.clients import ClientDirectory
from ecard.kit import audit
from ecard.kit.ids import new_id
from ecard.kit.infra import Conn
from ecard.kit.jwk import parse_public_jwk
from ecard.kit.principal import ClientKind
from ecard.kit.refusal import Refusal
from ecard.merchants import store
from ecard.merchants.models import ChannelAnswer, MerchantAnswer, Place, TerminalAnswer, TerminalStatus, Venue

CACHE_TTL_S = 1.0
CACHE_MAX = 100_000


@dataclass(frozen=True)
class Merchant:
    merchant_id: str
    name: str
    region: str
    status: str
    items: frozenset[str]
    functions: frozenset[str] = frozenset({"identity"})


@dataclass(frozen=True)
class TerminalSeen:
    """A terminal as the operators' list shows it."""

    terminal_id: str
    place_name: str
    region: str
    status: str


# how many merchants the operators' list shows
MERCHANTS_LISTED = 500


@dataclass(frozen=True)
class Terminal:
    """A terminal as verification needs it: whose it is, its name, and where it stands."""

    terminal_ref: str
    merchant_id: str
    terminal_id: str
    place: dict[str, Any]


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


def _merchant(row: store.MerchantRow) -> Merchant:
    return Merchant(row.merchant_id, row.name, row.region, row.status, frozenset(row.items), frozenset(row.functions))


def _place(row: store.TerminalRow) -> dict[str, Any]:
    return {
        "name": row.place_name,
        "address": row.place_address,
        "region": row.region,
        "lat": row.lat,
        "lon": row.lon,
    }


def _venue_place(row: store.VenueRow) -> Place | None:
    if row.place_name is None or row.place_address is None or row.region is None:
        return None
    if row.lat is None or row.lon is None:
        return None
    return Place(name=row.place_name, address=row.place_address, region=row.region, lat=row.lat, lon=row.lon)


def _functions_of(items: list[str], catalog: dict[str, frozenset[str]]) -> list[str]:
    """The functions a merchant needs to serve every one of `items`; identity when it names none."""
    needed = {function for code in items for function in catalog.get(code, ())}
    return sorted(needed) or ["identity"]


class Merchants:
    def __init__(
        self, pool: asyncpg.Pool, directory: ClientDirectory, catalog: Catalog, replica: asyncpg.Pool | None = None
    ) -> None:
        self._pool = pool
        # the public venue list tolerates a replica's lag
        self._replica = replica or pool
        self._directory = directory
        self._catalog = catalog
        self._cache: dict[str, tuple[float, Merchant | None]] = {}
        # a terminal's id and place never change once registered, so they are kept without expiry
        self._terminals: dict[str, Terminal] = {}

    async def _catalog_functions(self) -> dict[str, frozenset[str]]:
        """Each catalog item's functions, read before a transaction so that none waits on the catalog."""
        return {item.item_code: frozenset(item.functions) for item in await self._catalog.items()}

    @staticmethod
    def _check_known(items: list[str], catalog: dict[str, frozenset[str]]) -> None:
        unknown = sorted({code for code in items if code not in catalog})
        if unknown:
            raise Refusal("item_unknown", f"no catalog item has the code(s): {', '.join(unknown[:10])}")

    @staticmethod
    def _check_items(items: list[str], functions: list[str], catalog: dict[str, frozenset[str]]) -> list[str]:
        """The items, deduplicated, once each is known and shares a function with the merchant.

        A library (identity) entitled to a water bill (payment) would verify for a use it cannot serve.
        """
        Merchants._check_known(items, catalog)
        misfits = sorted({code for code in items if not catalog[code] & set(functions)})
        if misfits:
            raise Refusal(
                "entitlement_mismatch",
                f"these items share no function with the merchant's ({', '.join(functions)}):"
                f" {', '.join(misfits[:10])}",
                extra={"items": misfits},
            )
        return sorted(set(items))

    async def register(
        self,
        actor: str,
        name: str,
        region: str,
        items: list[str],
        public_key: Any,
        functions: Sequence[str] | None = None,
    ) -> MerchantAnswer:
        """A new merchant; without `functions` it takes those of its items (API.md registers any items so)."""
        name = _name(name, "name")
        region = _name(region, "region")
        _check_public_key(public_key)
        catalog = await self._catalog_functions()
        chosen = sorted(set(functions)) if functions is not None else _functions_of(items, catalog)
        items = self._check_items(items, chosen, catalog)
        merchant_id = new_id("mch")
        async with self._pool.acquire() as conn, conn.transaction():
            await store.insert_merchant(conn, merchant_id, name, region, chosen)
            await store.set_items(conn, merchant_id, items)
            key_id = await self._directory.register(conn, ClientKind.MERCHANT, merchant_id, public_key)
            await audit.record(conn, actor, "merchant.registered", merchant_id, {"items": items, "functions": chosen})
        return MerchantAnswer(
            merchant_id=merchant_id, key_id=key_id, name=name, region=region, items=items, functions=chosen
        )

    async def set_items(
        self, actor: str, merchant_id: str, items: list[str], functions: Sequence[str] | None = None
    ) -> Merchant:
        catalog = await self._catalog_functions()
        async with self._pool.acquire() as conn, conn.transaction():
            row = await store.merchant_for_update(conn, merchant_id)
            if row is None:
                raise Refusal("not_found", "no merchant has this id")
            chosen = sorted(set(functions)) if functions is not None else list(row.functions)
            items = self._check_items(items, chosen, catalog)
            if functions is not None:
                await store.set_functions(conn, merchant_id, chosen)
            await store.set_items(conn, merchant_id, items)
            await audit.record(conn, actor, "merchant.entitlements", merchant_id, {"items": items, "functions": chosen})
        self._cache.pop(merchant_id, None)
        return await self._get_fresh(merchant_id)

    async def set_status(self, actor: str, merchant_id: str, status: str) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            if not await store.set_merchant_status(conn, merchant_id, status):
                raise Refusal("not_found", "no merchant has this id")
            # covers the merchant's terminals too (their keys name it as parent) ...
            await self._directory.set_owner_status(conn, merchant_id, status)
            if status == "active":
                # ... but enabling the merchant must not bring back a terminal disabled on its own
                for terminal_ref in await store.disabled_terminals(conn, merchant_id):
                    await self._directory.set_owner_status(conn, terminal_ref, "disabled")
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
        merchant = _merchant(row) if row else None
        if len(self._cache) > CACHE_MAX:
            self._cache.clear()
        self._cache[merchant_id] = (now, merchant)
        return merchant

    async def listed(self) -> list[Merchant]:
        """The merchants for operators, by name (at most MERCHANTS_LISTED)."""
        return [_merchant(row) for row in await store.merchants_listed(self._pool, MERCHANTS_LISTED)]

    async def terminals(self, merchant_id: str) -> list[TerminalSeen]:
        """A merchant's terminals with their places and status, for operators."""
        rows = await store.terminals_of(self._pool, merchant_id)
        return [TerminalSeen(r.terminal_id, r.place_name, r.region, r.status) for r in rows]

    async def held(self, conn: Conn, merchant_id: str) -> Merchant | None:
        """The merchant as it stands, read in the caller's transaction (never cached) and share-locked until that
        ends: disabling it or changing its entitlements waits for the transaction (a payment being claimed)."""
        row = await store.merchant_share_locked(conn, merchant_id)
        return _merchant(row) if row else None

    async def add_terminal(
        self, actor: str, merchant_id: str, terminal_id: str, place: Place, public_key: Any
    ) -> TerminalAnswer:
        place_name = _name(place.name, "place.name")
        place_address = _name(place.address, "place.address")
        _check_public_key(public_key)
        terminal_ref = new_id("trm")
        async with self._pool.acquire() as conn, conn.transaction():
            merchant = await store.merchant_for_update(conn, merchant_id)
            if merchant is None:
                raise Refusal("not_found", "no merchant has this id")
            if not await store.insert_terminal(
                conn,
                terminal_ref,
                merchant_id,
                terminal_id,
                place_name,
                place_address,
                place.region,
                place.lat,
                place.lon,
            ):
                raise Refusal("terminal_exists", "this merchant already has a terminal with this terminal_id")
            key_id = await self._directory.register(
                conn, ClientKind.TERMINAL, terminal_ref, public_key, parent_id=merchant_id
            )
            if merchant.status != "active":
                # a disabled merchant's terminals wake up with it, not before
                await self._directory.set_owner_status(conn, terminal_ref, "disabled")
            await audit.record(
                conn,
                actor,
                "terminal.registered",
                terminal_ref,
                {"merchant_id": merchant_id, "terminal_id": terminal_id, "region": place.region},
            )
        return TerminalAnswer(
            key_id=key_id,
            terminal_id=terminal_id,
            merchant_id=merchant_id,
            place=Place(name=place_name, address=place_address, region=place.region, lat=place.lat, lon=place.lon),
        )

    async def set_terminal_status(self, actor: str, merchant_id: str, terminal_id: str, status: str) -> TerminalStatus:
        async with self._pool.acquire() as conn, conn.transaction():
            merchant = await store.merchant_for_update(conn, merchant_id)
            terminal_ref = await store.set_terminal_status(conn, merchant_id, terminal_id, status) if merchant else None
            if merchant is None or terminal_ref is None:
                raise Refusal("not_found", "this merchant has no terminal with this terminal_id")
            # the terminal's key works only while both it and its merchant are active
            key_status = "active" if status == "active" and merchant.status == "active" else "disabled"
            await self._directory.set_owner_status(conn, terminal_ref, key_status)
            await audit.record(
                conn,
                actor,
                f"terminal.{status}",
                terminal_ref,
                {"merchant_id": merchant_id, "terminal_id": terminal_id},
            )
        return TerminalStatus(merchant_id=merchant_id, terminal_id=terminal_id, status=status)

    async def terminal(self, terminal_ref: str) -> Terminal | None:
        """The terminal behind a terminal key (its key's owner), for the verification hot path."""
        hit = self._terminals.get(terminal_ref)
        if hit is not None:
            return hit
        row = await store.terminal(self._pool, terminal_ref)
        if row is None:
            return None
        terminal = Terminal(row.terminal_ref, row.merchant_id, row.terminal_id, _place(row))
        if len(self._terminals) > CACHE_MAX:
            self._terminals.clear()
        self._terminals[terminal_ref] = terminal
        return terminal

    async def venues(self, item_code: str | None, region: str | None) -> list[Venue]:
        """Where the card works today (服务专区): for one item, in one region, or everywhere."""
        day = self._catalog.today()
        if item_code is not None and await self._catalog.item(item_code, day) is None:
            raise Refusal("item_unknown", "no catalog item in force has this code")
        in_force = {item.item_code for item in await self._catalog.items() if item.in_force(day)}
        venues = []
        for row in await store.venues(self._replica, item_code, region):
            items = [code for code in row.items or () if code in in_force]
            if not items:
                continue
            venues.append(
                Venue(
                    merchant_id=row.merchant_id,
                    merchant_name=row.merchant_name,
                    terminal_id=row.terminal_id,
                    region=row.region or row.merchant_region,
                    place=_venue_place(row),
                    items=items,
                )
            )
        return venues

    async def payment_items(self) -> set[str]:
        """The items that an active merchant taking payments is entitled to."""
        return await store.payment_items(self._pool)

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
