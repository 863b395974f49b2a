"""Depth of use by the plan's definitions (说明 五), from recorded scenes, beneficiaries and real verifications."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta

import asyncpg

from ecard.catalog import Catalog, Item
from ecard.depth import store
from ecard.depth.models import Counts, DepthReport, ItemDepth, Payouts, SceneAnswer
from ecard.kit import audit
from ecard.kit.refusal import Refusal
from ecard.merchants import Merchants

# A scene accepts the card when one of its venues had an accepted verification in this many days up to the report date.
WINDOW_DAYS = 30
# The plan's highest level per function: payment has two (pay with the card's account; bills from 协约商户).
TOP_LEVEL = {"identity": 3, "disbursement": 3, "payment": 2}
PAYMENT_NOTE = (
    "payment level 2 (bills pulled up by an enrolled merchant, paid with the card): no bills paid in the window"
)


def share_level(part: int, whole: int) -> int:
    """Level 1, 2, 3 at 50 %, 70 %, 90 % or more (以上 includes the mark); 0 below or when nothing is known.

    Compared in integers, so that 7 of 10 is level 2 however floats round.
    """
    if whole <= 0:
        return 0
    for level, percent in ((3, 90), (2, 70), (1, 50)):
        if part * 100 >= whole * percent:
            return level
    return 0


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole > 0 else None


def on_track(levels: dict[str, int], target: int | None) -> bool | None:
    """Whether every function reached the plan's target, which for a function is capped at its highest level.

    The plan sets one level per item; an item that also takes payments can reach level 2 there at most.
    """
    if target is None:
        return None
    return all(level >= min(target, TOP_LEVEL[function]) for function, level in levels.items())


def _scene_counts(recorded: dict[str, int], accepting: dict[str, int]) -> tuple[Counts, Counts, float | None, int]:
    """Scenes and accepting scenes per district; a district accepts at most as many scenes as it has recorded."""
    if not recorded:
        return Counts(None, {}), Counts(None, dict(sorted(accepting.items()))), None, 0
    total = sum(recorded.values())
    accepted = sum(min(accepting.get(district, 0), scenes) for district, scenes in recorded.items())
    return (
        Counts(total, dict(sorted(recorded.items()))),
        Counts(accepted, dict(sorted(accepting.items()))),
        _ratio(accepted, total),
        share_level(accepted, total),
    )


def measure(
    item: Item,
    year: int,
    recorded: dict[str, int],
    accepting: dict[str, int],
    payouts: store.PayoutRow | None,
    payment_merchant: bool,
    bills_paid: bool = False,
) -> ItemDepth:
    """One item's depth: each of its functions' levels, the lowest of them, and how it stands to the plan."""
    scenes, accepting_scenes, share, identity_level = _scene_counts(recorded, accepting)
    levels: dict[str, int] = {}
    notes = []
    paid = None
    if "identity" in item.functions:
        levels["identity"] = identity_level
        if scenes.total is None:
            notes.append("no scenes recorded")
    if "disbursement" in item.functions:
        if payouts is None:
            levels["disbursement"] = 0
            notes.append(f"no beneficiaries recorded for {year}")
        else:
            paid = Payouts(
                item_code=item.item_code,
                year=year,
                beneficiaries=payouts.beneficiaries,
                paid_by_card=payouts.paid_by_card,
                share=_ratio(payouts.paid_by_card, payouts.beneficiaries),
            )
            levels["disbursement"] = share_level(paid.paid_by_card, paid.beneficiaries)
    target = item.depth_targets.get(f"{year}_end")
    if "payment" in item.functions:
        # level 1 stands for "payable with the card's financial account": a payment merchant takes it;
        # level 2 for bills that an enrolled merchant pulled up and citizens paid with the card, in the window
        levels["payment"] = 2 if bills_paid else 1 if payment_merchant else 0
        if not bills_paid:
            notes.append(PAYMENT_NOTE)
        if target is not None and target > TOP_LEVEL["payment"]:
            notes.append(f"the plan's target {target} counts as {TOP_LEVEL['payment']} for payment, its highest level")
    return ItemDepth(
        item_code=item.item_code,
        name=item.name,
        functions=list(item.functions),
        scenes=scenes,
        accepting_scenes=accepting_scenes,
        share=share,
        beneficiaries=paid,
        levels=levels,
        level=min(levels.values(), default=0),
        target=target,
        on_track=on_track(levels, target),
        note="; ".join(notes) or None,
    )


class Depth:
    def __init__(
        self, pool: asyncpg.Pool, catalog: Catalog, merchants: Merchants, replica: asyncpg.Pool | None = None
    ) -> None:
        self._pool = pool
        # the month of verifications and bills the report aggregates tolerates a replica's lag; the scenes and
        # beneficiaries operators set are read where they were written
        self._replica = replica or pool
        self._catalog = catalog
        self._merchants = merchants

    async def _item(self, item_code: str) -> Item:
        for item in await self._catalog.items():
            if item.item_code == item_code:
                return item
        raise Refusal("item_unknown", "no catalog item has this code")

    async def set_scenes(self, actor: str, item_code: str, district: str, scenes: int) -> SceneAnswer:
        await self._item(item_code)
        async with self._pool.acquire() as conn, conn.transaction():
            await store.set_scenes(conn, item_code, district, scenes)
            await audit.record(conn, actor, "depth.scenes", item_code, {"district": district, "scenes": scenes})
        return SceneAnswer(item_code=item_code, district=district, scenes=scenes)

    async def set_beneficiaries(
        self, actor: str, item_code: str, year: int, beneficiaries: int, paid_by_card: int
    ) -> Payouts:
        item = await self._item(item_code)
        if "disbursement" not in item.functions:
            raise Refusal("invalid_request", f"{item_code} is not a disbursement item", extra={"fields": ["item_code"]})
        if paid_by_card > beneficiaries:
            raise Refusal(
                "invalid_request", "paid_by_card cannot exceed beneficiaries", extra={"fields": ["paid_by_card"]}
            )
        async with self._pool.acquire() as conn, conn.transaction():
            await store.set_beneficiaries(conn, item_code, year, beneficiaries, paid_by_card)
            await audit.record(
                conn,
                actor,
                "depth.beneficiaries",
                item_code,
                {"year": year, "beneficiaries": beneficiaries, "paid_by_card": paid_by_card},
            )
        return Payouts(
            item_code=item_code,
            year=year,
            beneficiaries=beneficiaries,
            paid_by_card=paid_by_card,
            share=_ratio(paid_by_card, beneficiaries),
        )

    async def report(self, day: date | None = None) -> DepthReport:
        """Every item in force on `day`, measured over the WINDOW_DAYS (UTC days) that end with it."""
        day = day or self._catalog.today()
        end = datetime.combine(day + timedelta(days=1), time.min, tzinfo=UTC)
        recorded: dict[str, dict[str, int]] = defaultdict(dict)
        for scene in await store.scenes(self._pool):
            recorded[scene.item_code][scene.district] = scene.scenes
        accepting: dict[str, dict[str, int]] = defaultdict(dict)
        for venues in await store.accepting_venues(self._replica, end - timedelta(days=WINDOW_DAYS), end):
            accepting[venues.item_code][venues.district] = venues.venues
        payouts = {row.item_code: row for row in await store.beneficiaries(self._pool, day.year)}
        payment = await self._merchants.payment_items()
        billed = await store.paid_bill_items(self._replica, end - timedelta(days=WINDOW_DAYS), end)
        items = sorted((i for i in await self._catalog.items() if i.in_force(day)), key=lambda i: i.item_code)
        return DepthReport(
            date=day,
            window_days=WINDOW_DAYS,
            items=[
                measure(
                    item,
                    day.year,
                    recorded.get(item.item_code, {}),
                    accepting.get(item.item_code, {}),
                    payouts.get(item.item_code),
                    item.item_code in payment,
                    bills_paid=item.item_code in billed,
                )
                for item in items
            ],
        )
