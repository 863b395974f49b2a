"""Catalog items (应用事项清单): what the card may be used for, and what each use discloses."""

from __future__ import annotations

from datetime import date

import msgspec


class Item(msgspec.Struct, frozen=True):
    item_code: str
    name: str
    domain: str
    lead_department: str
    functions: tuple[str, ...]
    card_modes: tuple[str, ...]
    regions: tuple[str, ...]
    discloses: tuple[str, ...]
    effective_from: date
    effective_to: date | None = None

    def in_force(self, day: date) -> bool:
        return self.effective_from <= day and (self.effective_to is None or day <= self.effective_to)


class ItemList(msgspec.Struct):
    version: int
    items: list[Item]
