"""Risk monitoring: events other rooms raise, rules run off the answer's path, and what high-severity events do.

An accepted verification, a PIN lockout or a device enrolment is put on a bounded in-process queue (never
awaited: when the queue is full the observation is dropped and counted, the answer is not held up); one
supervised loop per process drains it and runs the rules against Redis windows keyed by `{card_id}` (or
`{merchant_id}`), so that every step is one transaction on one slot and holds across every worker.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Mapping
from typing import Protocol

import asyncpg
import redis.asyncio as aioredis
import redis.exceptions

from ecard.kit import audit
from ecard.kit.clock import Clock, iso, to_datetime
from ecard.kit.ids import id_to_bytes, new_id
from ecard.kit.metrics import RISK_DROPPED, RISK_EVENTS
from ecard.kit.refusal import Refusal
from ecard.risk import store
from ecard.risk.models import (
    SEVERITY,
    DeviceEnrolled,
    EventRow,
    Observation,
    PinLocked,
    RiskEvent,
    RiskSettings,
    Severity,
    Verified,
)

log = logging.getLogger("ecard.risk")

# What an event's detail may say: flat values, never personal data.
EventDetail = Mapping[str, str | int | float | bool]
EARTH_RADIUS_KM = 6371.0088
EVENTS_SHOWN = 200
ACTOR = "risk"


class CardActions(Protocol):
    """What risk monitoring may do to a card (the cards room)."""

    async def suspend_if_active(self, actor: str, card_id: str, reason: str) -> bool: ...

    async def reactivate_if_suspended_for(self, actor: str, card_id: str, reason: str) -> bool: ...

    async def hold_pin(self, actor: str, card_id: str, detail: dict[str, str | int | bool | None]) -> None: ...

    async def notify(self, card_id: str, kind: str, detail: dict[str, str | int | bool | None]) -> None: ...


# how many waiting observations the rules take in one round trip to Redis
RULES_BATCH = 256


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance between two places on the earth."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


def _raise_if_cancelling() -> None:
    """A client library may swallow our cancellation (redis-py, cut off in the middle of a pipeline, can return
    as if nothing happened): the loop must still stop when its supervisor stops it, not wait for the next one."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _is_event_id(value: str) -> bool:
    try:
        id_to_bytes(value)
    except ValueError:
        return False
    return value.startswith("rsk_")


def suspension_reason(event_id: str) -> str:
    """The status reason of a card this event suspended: how a false positive finds what to undo."""
    return f"risk event {event_id}"


class RiskInbox:
    """The rules' bounded queue: observations go in without waiting, the monitor takes them out."""

    def __init__(self, size: int, *, enabled: bool = True) -> None:
        self._queue: asyncio.Queue[Observation] = asyncio.Queue(maxsize=max(size, 1))
        self._enabled = enabled

    def put(self, observation: Observation) -> None:
        if not self._enabled:
            return
        try:
            self._queue.put_nowait(observation)
        except asyncio.QueueFull:
            RISK_DROPPED.inc()

    def verified(self, seen: Verified) -> None:
        self.put(seen)

    def pin_locked(self, card_id: str, at: float) -> None:
        self.put(PinLocked(card_id, at))

    def device_enrolled(self, card_id: str, at: float) -> None:
        self.put(DeviceEnrolled(card_id, at))

    async def take(self) -> Observation:
        return await self._queue.get()

    async def gather(self, more: int, within_s: float) -> None:
        """Give what arrives in the next `within_s` seconds the chance to join the batch at hand, unless `more` are
        waiting already: a batch of one costs the rules' round trip to Redis about six times what each of a batch
        of 64 does (load/PROFILE.md, 2026-12-07)."""
        if within_s > 0 and self._queue.qsize() < more:
            await asyncio.sleep(within_s)

    def take_ready(self, limit: int) -> list[Observation]:
        """Up to `limit` more observations already waiting, without waiting for any."""
        taken: list[Observation] = []
        while len(taken) < limit:
            try:
                taken.append(self._queue.get_nowait())
            except asyncio.QueueEmpty:
                break
        return taken

    def done(self) -> None:
        self._queue.task_done()

    async def settled(self) -> None:
        """Until every observation put so far has been through the rules."""
        await self._queue.join()


def _answer(row: EventRow) -> RiskEvent:
    return RiskEvent(
        event_id=row.public_id,
        kind=row.kind,
        severity=row.severity,
        card_id=row.card_id,
        merchant_id=row.merchant_id,
        detail=row.detail,
        raised_at=iso(row.raised_at.timestamp()),
        status=row.status,
        action=row.action,
        outcome=row.outcome,
        note=row.note,
        resolved_at=iso(row.resolved_at.timestamp()) if row.resolved_at else None,
    )


class RiskEvents:
    """Raising, acting on, listing and resolving risk events; and the rules that raise most of them."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        redis: aioredis.Redis,
        cards: CardActions,
        clock: Clock,
        settings: RiskSettings,
        inbox: RiskInbox,
    ) -> None:
        self._pool = pool
        self._redis = redis
        self._cards = cards
        self._clock = clock
        self._settings = settings
        self.inbox = inbox

    # --- raising and acting ------------------------------------------------------------------------

    async def raise_event(
        self,
        kind: str,
        card_id: str | None,
        merchant_id: str | None,
        detail: EventDetail,
        *,
        severity: Severity | None = None,
    ) -> str:
        """Records an event (an offline double tap, a tap on a suspended card, a rule's finding, ...), and acts
        on a high-severity one of a kind in `act_on` at once. Answers the event's id."""
        severity = severity or SEVERITY.get(kind, "medium")
        event_id = new_id("rsk")
        await store.insert_event(
            self._pool, event_id, kind, severity, card_id, merchant_id, dict(detail), to_datetime(self._clock.now())
        )
        RISK_EVENTS.labels(kind=kind, severity=severity).inc()
        if card_id is not None and severity == "high" and kind in self._settings.act_on:
            action = await self._act(event_id, kind, card_id)
            if action != "none":
                await store.set_action(self._pool, event_id, action)
        return event_id

    async def _act(self, event_id: str, kind: str, card_id: str) -> str:
        notice: dict[str, str | int | bool | None] = {"event_id": event_id, "kind": kind}
        if kind == "pin_guessing":
            # the holder, not an operator, lifts this: a channel re-checks who they are and resets the PIN
            await self._cards.hold_pin(ACTOR, card_id, notice)
            return "payments_locked"
        if await self._cards.suspend_if_active(ACTOR, card_id, suspension_reason(event_id)):
            await self._cards.notify(card_id, "risk_suspended", notice)
            return "suspended"
        return "none"  # the card is suspended or cancelled already

    async def replay(self, card_id: str | None, merchant_id: str, cti_hex: str) -> None:
        await self.raise_event("code_replay", card_id, merchant_id, {"cti": cti_hex})

    def verified(self, seen: Verified) -> None:
        """An accepted verification, for the rules; returns at once."""
        self.inbox.verified(seen)

    # --- the operators' desk -----------------------------------------------------------------------

    async def events(self, kind: str | None, card_id: str | None, status: str | None) -> list[RiskEvent]:
        return [_answer(row) for row in await store.events(self._pool, kind, card_id, status, EVENTS_SHOWN)]

    async def resolve(self, operator: str, event_id: str, outcome: str, note: str) -> RiskEvent:
        """An operator's verdict, audited; a false positive reactivates the card the event suspended (unless it
        has been suspended again since, for another reason)."""
        if not _is_event_id(event_id):
            raise Refusal("risk_event_not_found", "no risk event has this id")
        now = self._clock.now()
        async with self._pool.acquire() as conn, conn.transaction():
            found = await store.event_for_update(conn, event_id)
            if found is None:
                raise Refusal("risk_event_not_found", "no risk event has this id")
            if found.status != "open":
                raise Refusal("risk_event_resolved", "this risk event has been resolved already")
            row = await store.resolve(conn, event_id, outcome, note.strip(), operator, to_datetime(now))
            reactivated = False
            if outcome == "false_positive" and row.action == "suspended" and row.card_id is not None:
                reactivated = await self._cards.reactivate_if_suspended_for(
                    operator, row.card_id, suspension_reason(event_id)
                )
            await audit.record(
                conn, operator, f"risk_event.{outcome}", event_id, {"kind": row.kind, "reactivated": reactivated}
            )
        if reactivated and row.card_id is not None:
            await self._cards.notify(row.card_id, "risk_cleared", {"event_id": event_id, "kind": row.kind})
        return _answer(row)

    # --- the rules ---------------------------------------------------------------------------------

    async def run(self) -> None:
        """Drain the inbox until cancelled, in batches of what arrives within `batch_s` of a batch's first
        observation; an outage costs the batch at hand, never the loop."""
        while True:
            batch = [await self.inbox.take()]
            try:
                await self.inbox.gather(RULES_BATCH - 1, self._settings.batch_s)
                batch += self.inbox.take_ready(RULES_BATCH - 1)
                await self.evaluate(batch)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, redis.exceptions.RedisError) as exc:
                log.warning("risk rules skipped observations", extra={"error_type": type(exc).__name__})
            finally:
                for _ in batch:
                    self.inbox.done()
            _raise_if_cancelling()

    async def evaluate(self, batch: list[Observation]) -> None:
        verified = [seen for seen in batch if isinstance(seen, Verified)]
        if verified:
            await self._cards_seen(verified)
        for seen in batch:
            if isinstance(seen, Verified):
                await self._harvest(seen)
            elif isinstance(seen, PinLocked):
                await self._pin_guessing(seen)
            else:
                await self._churn(seen)

    async def _cards_seen(self, batch: list[Verified]) -> None:
        """velocity and impossible_travel: one Redis round trip for the whole batch, one script per card's slot."""
        s = self._settings
        places = [(v.lat, v.lon) if v.lat is not None and v.lon is not None else None for v in batch]
        steps = [
            store.CardStep(
                store.card_key(s.prefix, seen.card_id, "velocity"),
                store.card_key(s.prefix, seen.card_id, "place"),
                new_id("obs"),
                seen.at,
                s.velocity_window_s,
                place,
            )
            for seen, place in zip(batch, places, strict=True)
        ]
        for seen, place, (count, before) in zip(batch, places, await store.card_steps(self._redis, steps), strict=True):
            # raised once as the window crosses the limit, by whichever worker's step crossed it
            if count == s.velocity_max + 1:
                detail = {"verifications": count, "window_s": s.velocity_window_s}
                await self.raise_event("velocity", seen.card_id, seen.merchant_id, detail)
            if place is None or before is None:
                continue
            km = haversine_km(before[0], before[1], place[0], place[1])
            hours = max(abs(seen.at - before[2]), 1.0) / 3600
            if km >= s.travel_min_km and km / hours > s.travel_kmh:
                journey = {"km": round(km, 1), "seconds": round(hours * 3600), "kmh": round(km / hours)}
                await self.raise_event("impossible_travel", seen.card_id, seen.merchant_id, journey)

    async def _harvest(self, seen: Verified) -> None:
        if not seen.discloses_identity:
            return
        s = self._settings
        key = store.merchant_key(s.prefix, seen.merchant_id, "harvest")
        count = await store.count_in_window(self._redis, key, seen.card_id, seen.at, s.harvest_window_s)
        if count == s.harvest_cards + 1:
            detail: dict[str, str | int] = {
                "distinct_cards": count,
                "window_s": s.harvest_window_s,
                "item_code": seen.item_code,
            }
            await self.raise_event("merchant_harvest", None, seen.merchant_id, detail)

    async def _pin_guessing(self, seen: PinLocked) -> None:
        s = self._settings
        key = store.card_key(s.prefix, seen.card_id, "lockouts")
        count = await store.count_in_window(self._redis, key, new_id("obs"), seen.at, s.pin_window_s)
        if count >= s.pin_lockouts:
            detail: dict[str, str | int | float | bool] = {
                "lockouts": count,
                "window_s": s.pin_window_s,
                "escalated": True,
            }
            await self.raise_event("pin_guessing", seen.card_id, None, detail, severity="high")
        else:
            await self.raise_event("pin_guessing", seen.card_id, None, {"lockouts": count, "escalated": False})

    async def _churn(self, seen: DeviceEnrolled) -> None:
        s = self._settings
        key = store.card_key(s.prefix, seen.card_id, "enrolments")
        count = await store.count_in_window(self._redis, key, new_id("obs"), seen.at, s.churn_window_s)
        if count == s.churn_max + 1:
            detail = {"enrolments": count, "window_s": s.churn_window_s}
            await self.raise_event("enrolment_churn", seen.card_id, None, detail)


class AuditWatch:
    """The in-service audit check: walks the chain every `interval_s` and raises a high-severity event when it
    does not hold (once per break across every worker, however many check)."""

    def __init__(
        self, pool: asyncpg.Pool, redis: aioredis.Redis, key: bytes, risk: RiskEvents, prefix: str, interval_s: float
    ) -> None:
        self._pool = pool
        self._redis = redis
        self._key = key
        self._risk = risk
        self._prefix = prefix
        self._interval = interval_s

    async def check(self) -> bool:
        """One walk of the chain; True when it holds."""
        found = await audit.verify_chain(self._pool, self._key)
        if found.intact:
            return True
        where = f"{found.broken_seq}:{found.broken_entry}"
        if await store.first_claim(self._redis, f"{self._prefix}risk:{{audit}}:broken:{where}", 7 * 86_400):
            detail: dict[str, str | int | float | bool] = {"why": found.why, "sealed": found.sealed}
            if found.broken_seq is not None:
                detail["seq"] = found.broken_seq
            if found.broken_entry is not None:
                detail["entry_id"] = found.broken_entry
            await self._risk.raise_event("audit_chain_broken", None, None, detail, severity="high")
        return False

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.check()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, redis.exceptions.RedisError) as exc:
                log.warning("audit check round failed", extra={"error_type": type(exc).__name__})
            _raise_if_cancelling()
