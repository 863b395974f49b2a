"""Catalog items (应用事项清单): what the card may be used for, and what each use discloses."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

import msgspec

# The allowed values, each in the order the service stores them, so that equal sets compare equal.
FUNCTIONS = ("identity", "disbursement", "payment")
CARD_MODES = ("physical", "electronic")
DISCLOSURES = ("pseudonym", "name_masked", "name", "id_number")
DEPTH_KEYS = ("2025_start", "2025_end", "2026_end", "2027_end")
# The fields a catalog version records changes of, in the order they are shown.
TRACKED_FIELDS = (
    "name",
    "domain",
    "lead_department",
    "functions",
    "card_modes",
    "regions",
    "discloses",
    "effective_from",
    "effective_to",
    "depth_targets",
    "description",
)

Function = Literal["identity", "disbursement", "payment"]
CardMode = Literal["physical", "electronic"]


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
    # the plan's depth of use (应用深度, level 1..3) by milestone: "2025_start", "2025_end", "2026_end", "2027_end"
    depth_targets: dict[str, int] = msgspec.field(default_factory=dict)
    description: str = ""

    def in_force(self, day: date) -> bool:
        return self.effective_from <= day and (self.effective_to is None or day <= self.effective_to)


def json_value(value: Any) -> Any:
    """A field's value as it is written into a version's changes (and shown by the versions list)."""
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, tuple | list):
        return list(value)
    if isinstance(value, dict):
        return dict(sorted(value.items()))
    return value


def field_changes(old: Item | None, new: Item) -> dict[str, dict[str, Any]]:
    """The tracked fields whose value differs, with both values; every set field for a new item."""
    changes: dict[str, dict[str, Any]] = {}
    for field in TRACKED_FIELDS:
        before = None if old is None else json_value(getattr(old, field))
        after = json_value(getattr(new, field))
        if before != after:
            changes[field] = {"old": before, "new": after}
    return changes


class ItemFields(msgspec.Struct, forbid_unknown_fields=True):
    """An item as an operator states it; `depth_targets` and `description` left out keep what the item had.

    The item as GET answers it is accepted back: its `item_code`, when given, must be the path's.
    """

    name: str
    domain: str
    lead_department: str
    functions: list[str]
    card_modes: list[str]
    regions: list[str]
    discloses: list[str]
    effective_from: date
    effective_to: date | None = None
    depth_targets: dict[str, int] | None = None
    description: str | None = None
    item_code: str | None = None


class ItemList(msgspec.Struct):
    version: int
    items: list[Item]


class SavedItem(msgspec.Struct):
    item: Item
    version: int


class FieldChange(msgspec.Struct):
    old: Any
    new: Any


class ItemChange(msgspec.Struct):
    item_code: str
    fields: dict[str, FieldChange]


class Version(msgspec.Struct):
    version: int
    created_at: datetime
    actor: str
    changes: list[ItemChange]


class VersionList(msgspec.Struct):
    versions: list[Version]
