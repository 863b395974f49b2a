"""The catalog in force, cached per worker and re-read at most a second after any change; changes make versions."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import asyncpg

from ecard.catalog import store
from ecard.catalog.models import (
    CARD_MODES,
    DEPTH_KEYS,
    DISCLOSURES,
    FUNCTIONS,
    TRACKED_FIELDS,
    Item,
    ItemFields,
    Version,
    field_changes,
)
from ecard.catalog.seed import COLUMN_OF, CsvProblem, new_item_defaults, parse_catalog
from ecard.kit import audit
from ecard.kit.clock import Clock, SystemClock, to_datetime
from ecard.kit.infra import Conn
from ecard.kit.refusal import Refusal

REFRESH_S = 1.0
ITEM_CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,31}")
REGION = re.compile(r"[a-z][a-z0-9]{0,15}")
DOMAIN = re.compile(r"[a-z][a-z0-9_]{0,63}")
MAX_TEXT = {"name": 200, "lead_department": 128, "description": 2000}


def _one_of(values: Any, allowed: tuple[str, ...], what: str, *, may_be_empty: bool = False) -> tuple[str, ...]:
    unknown = [v for v in values if v not in allowed]
    if unknown:
        raise ValueError(f"unknown {what} {', '.join(map(repr, unknown[:5]))} (allowed: {', '.join(allowed)})")
    if not values and not may_be_empty:
        raise ValueError(f"at least one {what} is required")
    return tuple(a for a in allowed if a in values)


def _text(value: Any, limit: int) -> str:
    text = str(value).strip()
    if not text or len(text) > limit:
        raise ValueError(f"must be 1 to {limit} characters")
    return text


def _regions(values: Any) -> tuple[str, ...]:
    wrong = [v for v in values if not REGION.fullmatch(v)]
    if wrong:
        raise ValueError(f"{', '.join(map(repr, wrong[:5]))} is not a lowercase region code like cq or sc")
    if not values:
        raise ValueError("at least one region is required")
    return tuple(sorted(set(values)))


def _depth_targets(values: dict[str, int]) -> dict[str, int]:
    for key, level in values.items():
        if key not in DEPTH_KEYS:
            raise ValueError(f"unknown milestone {key!r} (allowed: {', '.join(DEPTH_KEYS)})")
        if isinstance(level, bool) or level not in (1, 2, 3):
            raise ValueError(f"{key}: the level must be 1, 2 or 3")
    return dict(sorted(values.items()))


def _domain(value: str) -> str:
    if not DOMAIN.fullmatch(value):
        raise ValueError("must be a lowercase code like social_insurance")
    return value


def _description(value: str) -> str:
    text = value.strip()
    if len(text) > MAX_TEXT["description"]:
        raise ValueError(f"must be at most {MAX_TEXT['description']} characters")
    return text


_CHECKS: dict[str, Callable[[Any], Any]] = {
    "name": lambda v: _text(v, MAX_TEXT["name"]),
    "domain": _domain,
    "lead_department": lambda v: _text(v, MAX_TEXT["lead_department"]),
    "functions": lambda v: _one_of(v, FUNCTIONS, "function"),
    "card_modes": lambda v: _one_of(v, CARD_MODES, "card mode"),
    "regions": _regions,
    "discloses": lambda v: _one_of(v, DISCLOSURES, "attribute", may_be_empty=True),
    "effective_from": lambda v: v,
    "effective_to": lambda v: v,
    "depth_targets": _depth_targets,
    "description": _description,
}


def draft(item_code: str, values: dict[str, Any]) -> tuple[Item | None, list[tuple[str, str]]]:
    """The item these values make, in the service's canonical form, or the (field, what is wrong) problems."""
    problems: list[tuple[str, str]] = []
    if not ITEM_CODE.fullmatch(item_code):
        problems.append(("item_code", "must be 1 to 32 letters, digits or dashes, like wl-001"))
    checked: dict[str, Any] = {}
    for name in TRACKED_FIELDS:
        try:
            checked[name] = _CHECKS[name](values[name])
        except ValueError as exc:
            problems.append((name, str(exc)))
    start, end = checked.get("effective_from"), checked.get("effective_to")
    if start is not None and end is not None and end < start:
        problems.append(("effective_to", "must not be before effective_from"))
    if problems:
        return None, problems
    return Item(item_code=item_code, **checked), []


def _values(item: Item) -> dict[str, Any]:
    return {name: getattr(item, name) for name in TRACKED_FIELDS}


@dataclass(frozen=True)
class Snapshot:
    """The catalog as one version: every item, in force or not."""

    version: int
    items: dict[str, Item] = field(default_factory=dict)


@dataclass(frozen=True)
class Saved:
    item: Item
    version: int
    created: bool


@dataclass(frozen=True)
class Imported:
    version: int
    items: int


class Catalog:
    def __init__(
        self, pool: asyncpg.Pool, clock: Clock | None = None, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._pool = pool
        self._clock = clock or SystemClock()
        # how old the worker's copy is: a clock of its own, so that a test can age the copy without waiting
        self._monotonic = monotonic
        self._snapshot = Snapshot(version=0)
        self._loaded_at = float("-inf")
        # bumped by invalidate(), so that a load already under way when a change commits is not taken as fresh
        self._generation = 0
        self._lock = asyncio.Lock()

    def today(self) -> date:
        """The UTC date that effective dates are read against, as for verification."""
        return to_datetime(self._clock.now()).date()

    async def _fresh(self) -> Snapshot:
        if self._monotonic() - self._loaded_at < REFRESH_S:
            return self._snapshot
        async with self._lock:
            if self._monotonic() - self._loaded_at >= REFRESH_S:
                generation, started = self._generation, self._monotonic()
                version, items = await store.current(self._pool)
                self._snapshot = Snapshot(version, {item.item_code: item for item in items})
                if generation == self._generation:
                    self._loaded_at = started
        return self._snapshot

    def invalidate(self) -> None:
        self._generation += 1
        self._loaded_at = float("-inf")

    async def item(self, item_code: str, day: date) -> Item | None:
        """The item in force on `day`, or None when it is unknown or not (yet, or any longer) in force."""
        item = (await self._fresh()).items.get(item_code)
        return item if item is not None and item.in_force(day) else None

    async def items(self) -> list[Item]:
        """Every item, in force or not, in item-code order."""
        return list((await self._fresh()).items.values())

    async def known(self, codes: list[str]) -> list[str]:
        """The codes among `codes` that name no catalog item."""
        items = (await self._fresh()).items
        return [c for c in codes if c not in items]

    async def listing(
        self, day: date | None = None, region: str | None = None, function: str | None = None, mode: str | None = None
    ) -> tuple[int, list[Item]]:
        """The items in force on `day` (today when None) that match every filter given, with their version."""
        day = day or self.today()
        if region is not None and not REGION.fullmatch(region):
            raise Refusal(
                "invalid_request", "region must be a lowercase region code like cq", extra={"fields": ["region"]}
            )
        snapshot = await self._fresh()
        return snapshot.version, [
            i
            for i in snapshot.items.values()
            if i.in_force(day)
            and (region is None or region in i.regions)
            and (function is None or function in i.functions)
            and (mode is None or mode in i.card_modes)
        ]

    async def lookup(self, item_code: str) -> tuple[int, Item]:
        """One item, in force or not, with the catalog version; `item_unknown` when no item has the code."""
        snapshot = await self._fresh()
        item = snapshot.items.get(item_code)
        if item is None:
            raise Refusal("item_unknown", "no catalog item has this code")
        return snapshot.version, item

    async def versions(self, before: int | None, limit: int) -> list[Version]:
        """Up to `limit` versions older than `before` (the newest when None), newest first."""
        return await store.versions(self._pool, before, limit)

    async def put(self, actor: str, item_code: str, fields: ItemFields) -> Saved:
        """Create or replace one item; `depth_targets` or `description` left out keep the item's own.

        The item as `lookup` gives it may come back whole: its `item_code` must then be the one it is put under.
        """
        if fields.item_code is not None and fields.item_code != item_code:
            raise Refusal(
                "invalid_request",
                "item_code in the body must be the item code of the path",
                extra={"fields": ["item_code"]},
            )
        given = {name: getattr(fields, name) for name in TRACKED_FIELDS}
        async with self._pool.acquire() as conn, conn.transaction():
            await store.lock_for_change(conn)
            found = await store.items(conn, [item_code])
            old = found[0] if found else None
            base = _values(old) if old is not None else new_item_defaults(item_code)
            values = {**base, **{k: v for k, v in given.items() if v is not None or k == "effective_to"}}
            item, problems = draft(item_code, values)
            if item is None:
                detail = "; ".join(f"{name}: {message}" for name, message in problems)
                raise Refusal("invalid_request", detail, extra={"fields": [name for name, _ in problems]})
            version, _ = await self._record(conn, actor, [(old, item)])
        self.invalidate()
        return Saved(item, version, created=old is None)

    async def import_csv(self, file_name: str, text: str) -> Imported:
        """Apply a catalog CSV as one version, or nothing at all: `invalid_request` lists every bad line."""
        parsed = parse_catalog(text)
        problems = list(parsed.problems)
        async with self._pool.acquire() as conn, conn.transaction():
            await store.lock_for_change(conn)
            current = {item.item_code: item for item in await store.items(conn, [r.item_code for r in parsed.rows])}
            changes: list[tuple[Item | None, Item]] = []
            for row in parsed.rows:
                old = current.get(row.item_code)
                base = _values(old) if old is not None else new_item_defaults(row.item_code)
                item, wrong = draft(row.item_code, {**base, **row.values})
                columns = ((COLUMN_OF.get(name, name), message) for name, message in wrong)
                # a cell already reported as unreadable is not reported again for the value it fell back to
                problems += [CsvProblem(row.line, c, m) for c, m in columns if c not in row.bad_columns]
                if item is not None:
                    changes.append((old, item))
            if problems:
                errors = [str(p) for p in sorted(problems, key=lambda p: p.line)]
                raise Refusal(
                    "invalid_request",
                    f"{len(errors)} problem(s) in {file_name}; nothing was imported",
                    extra={"errors": errors, "fields": sorted({p.column for p in problems})},
                )
            version, changed = await self._record(conn, f"import:{file_name}", changes)
        self.invalidate()
        return Imported(version, changed)

    async def _record(self, conn: Conn, actor: str, pairs: list[tuple[Item | None, Item]]) -> tuple[int, int]:
        """Write the items that differ and one version saying so; nothing (and the current version) if none do."""
        changes = [(new, diff) for old, new in pairs if (diff := field_changes(old, new))]
        if not changes:
            return await store.latest_version(conn), 0
        version = await store.insert_version(
            conn, actor, to_datetime(self._clock.now()), [(item.item_code, diff) for item, diff in changes]
        )
        for item, _ in changes:
            await store.upsert_item(conn, item)
        detail = {"items": {item.item_code: sorted(diff) for item, diff in changes}}
        await audit.record(conn, actor, "catalog.version", f"catalog:v{version}", detail)
        return version, len(changes)
