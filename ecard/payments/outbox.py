"""Merchant callbacks from the transactional outbox: signed POSTs, retried with backoff and full jitter until 2xx.

A deliverer leases due events (a committed row change, `leased_until`), posts them with no database transaction
open, and records each outcome in a short transaction of its own. A lease outlasts the attempt's hard deadline, so
two deliverers never post one event at once, and one that crashed leaves events that are due again once their
leases end. Each merchant gets a few deliveries at a time, so that one slow merchant server cannot hold up others.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx

from ecard.bank import RequestSigner
from ecard.kit.clock import Clock, iso, to_datetime
from ecard.kit.ids import new_id
from ecard.kit.infra import Conn
from ecard.kit.supervisor import woken
from ecard.payments import store
from ecard.payments.destinations import DestinationRefused, Destinations
from ecard.payments.models import Bill, LeasedEvent

log = logging.getLogger("ecard.payments.outbox")

MAX_DELAY_S = 3600.0
# What is read of a merchant's answer: its status decides, the body is read only so far (and only so that a short
# answer leaves the connection reusable); beyond it the connection is dropped, never read further.
ANSWER_CAP_BYTES = 4096
# A lease lasts this much longer than the attempt's hard deadline: time to record the outcome.
LEASE_MARGIN_S = 30.0
_DB_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)


@dataclass(frozen=True)
class CallbackPolicy:
    """`deadline_s` bounds one attempt in all (resolve, connect, send, read); `concurrency` the deliveries one
    deliverer runs at once; `per_merchant` those of one merchant in flight over all deliverers."""

    base_delay_s: float
    window_s: float
    poll_s: float
    deadline_s: float
    concurrency: int = 32
    per_merchant: int = 2


def event_body(event: str, event_id: str, bill: Bill, amount_fen: int, at: float, **extra: Any) -> bytes:
    """API.md's callback body, with the event id (merchants deduplicate on it) and any further fields."""
    body = {
        "event": event,
        "event_id": event_id,
        "bill_id": bill.bill_id,
        "out_bill_no": bill.out_bill_no,
        "amount_fen": amount_fen,
        "at": iso(at),
        **extra,
    }
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


async def enqueue(conn: Conn, event: str, bill: Bill, amount_fen: int, at: float, **extra: Any) -> None:
    """Write the event in the caller's transaction: it exists exactly when the state change does."""
    event_id = new_id("evt")
    body = event_body(event, event_id, bill, amount_fen, at, **extra)
    await store.insert_event(
        conn, event_id, bill.bill_id, bill.merchant_id, event, bill.notify_url, body, to_datetime(at)
    )


async def enqueue_batch(
    conn: Conn, event: str, batch_id: str, merchant_id: str, notify_url: str, fields: dict[str, Any], at: float
) -> None:
    """A disbursement batch's event (issue 12), in the caller's transaction, delivered and signed as bills' are."""
    event_id = new_id("evt")
    body = {"event": event, "event_id": event_id, "batch_id": batch_id, **fields, "at": iso(at)}
    raw = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    await store.insert_event(conn, event_id, None, merchant_id, event, notify_url, raw, to_datetime(at), batch_id)


def next_delay(policy: CallbackPolicy, attempts: int) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base·2^attempts)]."""
    ceiling = min(MAX_DELAY_S, policy.base_delay_s * (2 ** min(attempts, 30)))
    return random.uniform(0, ceiling)


class Callbacks:
    """Delivers due outbox events; any number of deliverers may run, each event is posted by one at a time."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        clock: Clock,
        signer: RequestSigner,
        policy: CallbackPolicy,
        destinations: Destinations,
    ) -> None:
        self._pool = pool
        self._clock = clock
        self._signer = signer
        self._policy = policy
        self._destinations = destinations
        self._wake = asyncio.Event()
        self._in_flight: set[asyncio.Task[None]] = set()
        self._client = httpx.AsyncClient(
            follow_redirects=False,
            timeout=httpx.Timeout(policy.deadline_s),
            limits=httpx.Limits(max_connections=policy.concurrency, max_keepalive_connections=policy.concurrency),
            # the answer is read raw: a compressed body could be a bomb
            headers={"Accept-Encoding": "identity"},
        )

    def wake(self) -> None:
        """Deliver now rather than at the next poll: a new event was committed."""
        self._wake.set()

    async def _lease(self, room: int) -> list[LeasedEvent]:
        if room <= 0:
            return []
        now = self._clock.now()
        return await store.lease_due_events(
            self._pool,
            to_datetime(now),
            to_datetime(now + self._policy.deadline_s + LEASE_MARGIN_S),
            new_id("lse"),
            self._policy.per_merchant,
            room,
        )

    async def deliver_due(self) -> int:
        """One round: lease what is due (within the bounds), post each, record the outcomes; how many were posted."""
        leased = await self._lease(self._policy.concurrency)
        await asyncio.gather(*(self._deliver(event) for event in leased))
        return len(leased)

    async def _deliver(self, event: LeasedEvent) -> None:
        status, error = await self._post(event)
        try:
            await self._record(event, status, error)
        except _DB_ERRORS as exc:
            # the lease runs out and the event is due again: at least once, never lost
            log.warning(
                "callback outcome not recorded", extra={"event_id": event.event_id, "error_type": type(exc).__name__}
            )

    async def _post(self, event: LeasedEvent) -> tuple[int | None, str | None]:
        """The merchant's HTTP status, or None and why not; never longer than the policy's deadline in all."""
        body = bytes(event.body)
        status: int | None = None
        try:
            async with asyncio.timeout(self._policy.deadline_s):
                target = await self._destinations.target(event.notify_url)
                headers = {
                    "Content-Type": "application/json",
                    "Host": target.host_header,
                    **self._signer.sign("POST", event.notify_url, body),
                }
                extensions = {"sni_hostname": target.sni_hostname} if target.sni_hostname else None
                request = self._client.build_request(
                    "POST", target.url, content=body, headers=headers, extensions=extensions
                )
                answer = await self._client.send(request, stream=True)
                try:
                    status = answer.status_code
                    read = 0
                    async for chunk in answer.aiter_raw():
                        read += len(chunk)
                        if read >= ANSWER_CAP_BYTES:
                            break
                finally:
                    await answer.aclose()
        except DestinationRefused:
            return None, "destination_refused"
        except TimeoutError:
            return (status, None) if status is not None else (None, "deadline_exceeded")
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            return (status, None) if status is not None else (None, type(exc).__name__)
        return status, None

    async def _record(self, event: LeasedEvent, status: int | None, error: str | None) -> None:
        delivered = status is not None and 200 <= status < 300
        at = self._clock.now()
        next_at = None
        if not delivered:
            retry_at = at + next_delay(self._policy, event.attempts)
            if retry_at <= event.created_at.timestamp() + self._policy.window_s:
                next_at = to_datetime(retry_at)
        async with self._pool.acquire() as conn, conn.transaction():
            held = await store.record_delivery(
                conn, event, to_datetime(at), status, error, delivered=delivered, next_attempt_at=next_at
            )
        if held and not delivered and next_at is None:
            log.warning("callback given up", extra={"event_id": event.event_id})

    def _started(self, event: LeasedEvent) -> None:
        task = asyncio.create_task(self._deliver(event))
        self._in_flight.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        # room for another delivery: look for due events now
        self._wake.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("callback delivery failed", exc_info=task.exception())

    async def run(self) -> None:
        """Deliver until cancelled: whenever there is room, at each wake-up, and every poll interval in any case."""
        try:
            while True:
                self._wake.clear()
                try:
                    leased = await self._lease(self._policy.concurrency - len(self._in_flight))
                except _DB_ERRORS as exc:
                    log.warning("callback round failed", extra={"error_type": type(exc).__name__})
                    leased = []
                for event in leased:
                    self._started(event)
                await woken(self._wake, self._policy.poll_s)
        finally:
            for task in list(self._in_flight):
                task.cancel()
            await asyncio.gather(*self._in_flight, return_exceptions=True)

    async def aclose(self) -> None:
        await self._client.aclose()
