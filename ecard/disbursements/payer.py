"""Paying approved batches: reserve the total at the bank, credit each row once, release the rest, announce.

Crash-safe by construction: a batch is worked on under a lease committed before the bank is called; every bank call
is idempotent on an id derived from the batch (the reservation) or the batch and row (each credit), so whoever takes
the batch over after a crash sends the same calls again and the bank answers what it did, never doing it twice.
Rows are booked only from the bank's answers, in transactions fenced by the lease; the rest of the reservation is
released only when no row is left ready, so a late credit can never overdraw it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg

from ecard.bank import BankConflict, BankError, BankMismatch, BankRefused, BankUnavailable, FundingBank
from ecard.bank import InsufficientFunds as BankInsufficient
from ecard.disbursements import store
from ecard.disbursements.models import Batch, ReadyRow
from ecard.disbursements.service import Disbursements, batch_counts, batch_event_fields
from ecard.kit.clock import Clock, to_datetime
from ecard.kit.ids import new_id
from ecard.kit.infra import Conn
from ecard.kit.supervisor import woken
from ecard.payments import book_batch, enqueue_batch

log = logging.getLogger("ecard.disbursements")

# Rows credited, then booked, together.
CHUNK = 500
_DB_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)


@dataclass(frozen=True)
class PayerPolicy:
    concurrency: int
    lease_s: float
    poll_s: float
    retries: int
    retry_base_s: float = 0.05


def transfer_id(batch_id: str, row_no: int) -> str:
    """The bank transfer id of one row's credit: the same for every attempt, by whoever makes it."""
    return f"{batch_id}:{row_no}"


def reservation_id(batch_id: str) -> str:
    return f"{batch_id}:reserve"


def funding_account(merchant_id: str) -> str:
    return f"funding:{merchant_id}"


def reserved_account(batch_id: str) -> str:
    return f"reserved:{batch_id}"


def card_account(card_id: str) -> str:
    return f"card:{card_id}"


@dataclass(frozen=True)
class _Outcome:
    row: ReadyRow
    # paid, failed (with the bank's code), or None: the bank's answer is still unknown
    status: str | None
    code: str | None = None


class _LeaseLost(Exception):  # noqa: N818 - a signal between the payer's own steps
    """Another worker holds the batch now: stop, and book nothing."""


class Payer:
    """Finds approved batches and pays them; any number may run, one batch is worked on by one at a time."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        clock: Clock,
        bank: FundingBank,
        disbursements: Disbursements,
        wake_callbacks: Callable[[], None],
        policy: PayerPolicy,
    ) -> None:
        self._pool = pool
        self._clock = clock
        self._bank = bank
        self._disbursements = disbursements
        self._wake_callbacks = wake_callbacks
        self._policy = policy
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Pay until cancelled: at each wake-up and every poll interval; overdue approvals expire on the way."""
        while True:
            self._wake.clear()
            try:
                await self._disbursements.expire_overdue()
                while await self.pay_next():
                    pass
            except _DB_ERRORS as exc:
                log.warning("disbursement round failed", extra={"error_type": type(exc).__name__})
            await woken(self._wake, self._policy.poll_s)

    async def pay_next(self) -> bool:
        """Lease one batch that is due and work on it; False when none is."""
        now = self._clock.now()
        token = new_id("lse")
        batch = await store.lease_work(self._pool, to_datetime(now), to_datetime(now + self._policy.lease_s), token)
        if batch is None:
            return False
        try:
            await self._work(batch, token)
        except _LeaseLost:
            log.warning("disbursement lease lost", extra={"batch_id": batch.batch_id})
        return True

    async def _work(self, batch: Batch, token: str) -> None:
        if batch.status == "approved":
            reserved = await self._reserve(batch, token)
            if not reserved:
                return
        done = await self._credit_all(batch, token)
        if done:
            await self._finish(batch, token)

    async def _held(self, conn: Conn, batch: Batch, token: str) -> Batch:
        found = await store.held(conn, batch.batch_id, token, to_datetime(self._clock.now() + self._policy.lease_s))
        if found is None:
            raise _LeaseLost
        return found

    async def _later(self, batch: Batch, token: str) -> None:
        """The bank could not be asked now: the batch is due again after a poll interval."""
        await store.let_go(self._pool, batch.batch_id, token, to_datetime(self._clock.now() + self._policy.poll_s))

    async def _reserve(self, batch: Batch, token: str) -> bool:
        """The ready total set aside at the bank and booked; False when the batch cannot go on now (or failed)."""
        rid = reservation_id(batch.batch_id)
        if batch.amount_total_fen > 0:
            try:
                await self._bank.reserve(rid, batch.merchant_id, batch.amount_total_fen, f"batch {batch.batch_id}")
            except BankInsufficient:
                await self._fail(batch, token, "insufficient_funds")
                return False
            except (BankRefused, BankConflict) as exc:
                await self._fail(batch, token, _code(exc))
                return False
            except (BankUnavailable, BankMismatch) as exc:
                log.warning(
                    "disbursement reservation unsettled",
                    extra={"batch_id": batch.batch_id, "error_type": type(exc).__name__},
                )
                await self._later(batch, token)
                return False
        now = to_datetime(self._clock.now())
        async with self._pool.acquire() as conn, conn.transaction():
            await self._held(conn, batch, token)
            if batch.amount_total_fen > 0:
                await book_batch(
                    conn,
                    "reserve",
                    batch.batch_id,
                    batch.merchant_id,
                    batch.amount_total_fen,
                    now,
                    [
                        (funding_account(batch.merchant_id), -batch.amount_total_fen),
                        (reserved_account(batch.batch_id), batch.amount_total_fen),
                    ],
                )
            await store.set_paying(conn, batch.batch_id, rid)
        return True

    async def _fail(self, batch: Batch, token: str, code: str) -> None:
        now = self._clock.now()
        async with self._pool.acquire() as conn, conn.transaction():
            await self._held(conn, batch, token)
            await store.set_failed(conn, batch.batch_id, code, to_datetime(now))
            await self._announce(conn, batch.batch_id, "batch.failed", now)
        self._wake_callbacks()

    async def _announce(self, conn: Conn, batch_id: str, event: str, now: float) -> None:
        batch = await store.batch(conn, batch_id)
        assert batch is not None
        fields = batch_event_fields(batch, await batch_counts(conn, batch_id))
        await enqueue_batch(conn, event, batch_id, batch.merchant_id, batch.notify_url, fields, now)

    async def _credit_all(self, batch: Batch, token: str) -> bool:
        """Credit every ready row, a chunk at a time; True when none is left ready (all paid or failed)."""
        gate = asyncio.Semaphore(max(1, self._policy.concurrency))
        rid = reservation_id(batch.batch_id)
        after = 0
        unsettled = False
        while True:
            rows = await store.ready_rows(self._pool, batch.batch_id, after, CHUNK)
            if not rows:
                break
            after = rows[-1].row_no

            async def credit(row: ReadyRow) -> _Outcome:
                async with gate:
                    return await self._credit(batch.batch_id, rid, row)

            outcomes = await asyncio.gather(*(credit(row) for row in rows))
            await self._book(batch, token, outcomes)
            unsettled = unsettled or any(o.status is None for o in outcomes)
        if unsettled:
            await self._later(batch, token)
            return False
        return True

    async def _credit(self, batch_id: str, rid: str, row: ReadyRow) -> _Outcome:
        memo = f"disbursement {batch_id}"
        for attempt in range(self._policy.retries + 1):
            try:
                await self._bank.disburse(rid, transfer_id(batch_id, row.row_no), row.card_id, row.amount_fen, memo)
            except (BankRefused, BankConflict) as exc:
                return _Outcome(row, "failed", _code(exc))
            except BankMismatch:
                log.error(  # noqa: TRY400 - an alert, not an exception
                    "bank answer does not match", extra={"batch_id": batch_id, "row_no": row.row_no}
                )
                return _Outcome(row, None)
            except BankError as exc:
                log.warning(
                    "disbursement credit unsettled",
                    extra={"batch_id": batch_id, "row_no": row.row_no, "error_type": type(exc).__name__},
                )
                await asyncio.sleep(self._policy.retry_base_s * 2**attempt)
            else:
                return _Outcome(row, "paid")
        return _Outcome(row, None)

    async def _book(self, batch: Batch, token: str, outcomes: list[_Outcome]) -> None:
        """What the bank did with a chunk's rows, in one transaction while the lease holds."""
        now = to_datetime(self._clock.now())
        paid = [o.row.row_no for o in outcomes if o.status == "paid"]
        failed = [(o.row.row_no, o.code or "bank_refused") for o in outcomes if o.status == "failed"]
        if not paid and not failed:
            return
        async with self._pool.acquire() as conn, conn.transaction():
            await self._held(conn, batch, token)
            newly = await store.mark_paid(conn, batch.batch_id, paid, now) if paid else []
            for row in newly:
                await book_batch(
                    conn,
                    "disburse",
                    batch.batch_id,
                    batch.merchant_id,
                    row.amount_fen,
                    now,
                    [(reserved_account(batch.batch_id), -row.amount_fen), (card_account(row.card_id), row.amount_fen)],
                )
            if newly:
                await store.add_paid(conn, batch.batch_id, sum(r.amount_fen for r in newly))
            if failed:
                await store.mark_failed(conn, batch.batch_id, failed)

    async def _finish(self, batch: Batch, token: str) -> None:
        """No row is ready: the rest of the reservation goes back to the payer, and the batch is completed."""
        released = 0
        if batch.amount_total_fen > 0:
            try:
                answer = await self._bank.release(reservation_id(batch.batch_id))
            except BankError as exc:
                log.warning(
                    "disbursement release unsettled",
                    extra={"batch_id": batch.batch_id, "error_type": type(exc).__name__},
                )
                await self._later(batch, token)
                return
            released = answer.released_fen
        now = self._clock.now()
        async with self._pool.acquire() as conn, conn.transaction():
            held = await self._held(conn, batch, token)
            if await store.any_ready(conn, batch.batch_id):
                return
            left = held.amount_total_fen - held.paid_fen
            if released != left:
                log.error(
                    "bank release does not match",
                    extra={"batch_id": batch.batch_id, "released_fen": released, "expected_fen": left},
                )
            if left > 0:
                await book_batch(
                    conn,
                    "release",
                    batch.batch_id,
                    batch.merchant_id,
                    left,
                    to_datetime(now),
                    [(reserved_account(batch.batch_id), -left), (funding_account(batch.merchant_id), left)],
                )
            await store.set_completed(conn, batch.batch_id, to_datetime(now))
            await self._announce(conn, batch.batch_id, "batch.completed", now)
        self._wake_callbacks()


def _code(exc: BankRefused | BankConflict) -> str:
    if isinstance(exc, BankRefused):
        return exc.code
    return str(exc).partition(":")[0] or "transfer_conflict"
