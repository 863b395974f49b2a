"""Merchant callbacks from the transactional outbox: signed POSTs, retried with backoff and full jitter until 2xx."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import httpx

from ecard.bank import RequestSigner
from ecard.kit.clock import Clock, iso, to_datetime
from ecard.kit.ids import new_id
from ecard.kit.infra import Conn
from ecard.payments import store

log = logging.getLogger("ecard.payments.outbox")

BATCH = 20
MAX_DELAY_S = 3600.0


@dataclass(frozen=True)
class CallbackPolicy:
    base_delay_s: float
    window_s: float
    poll_s: float
    timeout_s: float


def event_body(event: str, event_id: str, bill: dict[str, Any], amount_fen: int, at: float, **extra: Any) -> bytes:
    """API.md's callback body, with the event id (merchants deduplicate on it) and any further fields."""
    body = {
        "event": event,
        "event_id": event_id,
        "bill_id": bill["bill_id"],
        "out_bill_no": bill["out_bill_no"],
        "amount_fen": amount_fen,
        "at": iso(at),
        **extra,
    }
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


async def enqueue(conn: Conn, event: str, bill: dict[str, Any], amount_fen: int, at: float, **extra: Any) -> None:
    """Write the event in the caller's transaction: it exists exactly when the state change does."""
    event_id = new_id("evt")
    body = event_body(event, event_id, bill, amount_fen, at, **extra)
    await store.insert_event(
        conn, event_id, bill["bill_id"], bill["merchant_id"], event, bill["notify_url"], body, to_datetime(at)
    )


def next_delay(policy: CallbackPolicy, attempts: int) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base·2^attempts)]."""
    ceiling = min(MAX_DELAY_S, policy.base_delay_s * (2 ** min(attempts, 30)))
    return random.uniform(0, ceiling)


class Callbacks:
    """Delivers due outbox events; any number of workers may run it, each event goes to one of them at a time."""

    def __init__(self, pool: asyncpg.Pool, clock: Clock, signer: RequestSigner, policy: CallbackPolicy) -> None:
        self._pool = pool
        self._clock = clock
        self._signer = signer
        self._policy = policy
        self._wake = asyncio.Event()
        self._client = httpx.AsyncClient(timeout=policy.timeout_s, follow_redirects=False)

    def wake(self) -> None:
        """Deliver now rather than at the next poll: a new event was committed."""
        self._wake.set()

    async def deliver_due(self) -> int:
        """One round: lock the due events, POST each, record the outcomes. Returns how many were attempted.

        The row locks are held while the POSTs run, so another worker skips these events; a worker that dies
        mid-way releases them with its connection, and they are sent again (at least once, never twice at once)."""
        async with self._pool.acquire() as conn, conn.transaction():
            due = await store.due_events(conn, to_datetime(self._clock.now()), BATCH)
            outcomes = await asyncio.gather(*(self._post(event) for event in due))
            for event, (status, error) in zip(due, outcomes, strict=True):
                await self._record(conn, event, status, error)
        return len(due)

    async def _post(self, event: dict[str, Any]) -> tuple[int | None, str | None]:
        body = bytes(event["body"])
        url = event["notify_url"]
        headers = {"Content-Type": "application/json", **self._signer.sign("POST", url, body)}
        try:
            answer = await self._client.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return None, type(exc).__name__
        return answer.status_code, None

    async def _record(self, conn: Conn, event: dict[str, Any], status: int | None, error: str | None) -> None:
        delivered = status is not None and 200 <= status < 300
        at = self._clock.now()
        next_at: datetime | None = None
        if not delivered:
            retry_at = at + next_delay(self._policy, int(event["attempts"]))
            if retry_at <= event["created_at"].timestamp() + self._policy.window_s:
                next_at = to_datetime(retry_at)
        await store.record_delivery(
            conn, event["event_id"], to_datetime(at), status, error, delivered=delivered, next_attempt_at=next_at
        )
        if not delivered and next_at is None:
            log.warning("callback given up", extra={"event_id": event["event_id"]})

    async def run(self) -> None:
        """Deliver until cancelled: at each wake-up, and every poll interval in any case."""
        while True:
            try:
                attempted = await self.deliver_due()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("callback round failed", extra={"error_type": type(exc).__name__})
                attempted = 0
            if attempted:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._policy.poll_s)
            self._wake.clear()

    async def aclose(self) -> None:
        await self._client.aclose()
