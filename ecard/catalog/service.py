"""The catalog in force, cached per worker and re-read at most a second after any change."""

from __future__ import annotations

import asyncio
import time
from datetime import date

import asyncpg

from ecard.catalog import store
from ecard.catalog.models import Item

REFRESH_S = 1.0


class Catalog:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._items: dict[str, Item] = {}
        self._loaded_at = float("-inf")
        self._lock = asyncio.Lock()

    async def _fresh(self) -> dict[str, Item]:
        if time.monotonic() - self._loaded_at < REFRESH_S:
            return self._items
        async with self._lock:
            if time.monotonic() - self._loaded_at >= REFRESH_S:
                rows = await store.all_items(self._pool)
                self._items = {
                    r["item_code"]: Item(
                        item_code=r["item_code"],
                        name=r["name"],
                        domain=r["domain"],
                        lead_department=r["lead_department"],
                        functions=tuple(r["functions"]),
                        card_modes=tuple(r["card_modes"]),
                        regions=tuple(r["regions"]),
                        discloses=tuple(r["discloses"]),
                        effective_from=r["effective_from"],
                        effective_to=r["effective_to"],
                    )
                    for r in rows
                }
                self._loaded_at = time.monotonic()
        return self._items

    def invalidate(self) -> None:
        self._loaded_at = float("-inf")

    async def item(self, item_code: str, day: date) -> Item | None:
        """The item in force on `day`, or None when it is unknown or not (yet, or any longer) in force."""
        item = (await self._fresh()).get(item_code)
        return item if item is not None and item.in_force(day) else None

    async def items(self) -> list[Item]:
        return list((await self._fresh()).values())

    async def known(self, codes: list[str]) -> list[str]:
        """The codes among `codes` that name no catalog item."""
        items = await self._fresh()
        return [c for c in codes if c not in items]
