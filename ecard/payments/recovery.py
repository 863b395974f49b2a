"""Settles payments and refunds left half-way (a crash or a bank timeout between the bank and the local commit)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

import asyncpg

from ecard.bank import BankAdapter, BankError
from ecard.kit.clock import Clock, to_datetime
from ecard.payments import ledger, store
from ecard.payments.service import finish_payment, finish_refund, payable

log = logging.getLogger("ecard.payments.recovery")


@dataclass
class Recovered:
    """What one recovery round did, by transfer id."""

    completed: list[str] = field(default_factory=list)
    reversed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    refunds_credited: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, list[str]]:
        return {
            "completed": self.completed,
            "reversed": self.reversed,
            "failed": self.failed,
            "refunds_credited": self.refunds_credited,
            "left": self.left,
        }


class Recovery:
    """Finds attempts claimed longer ago than the grace period and settles them with the bank.

    Each attempt is settled under its row lock (SKIP LOCKED), so any number of workers may run rounds at once and
    each attempt is handled by one of them."""

    def __init__(self, pool: asyncpg.Pool, clock: Clock, bank: BankAdapter, grace_s: float) -> None:
        self._pool = pool
        self._clock = clock
        self._bank = bank
        self._grace_s = grace_s

    async def run_once(self) -> Recovered:
        done = Recovered()
        skipped: set[str] = set()
        while await self._settle_one_payment(done, skipped):
            pass
        while await self._settle_one_refund(done, skipped):
            pass
        return done

    async def _settle_one_payment(self, done: Recovered, skipped: set[str]) -> bool:
        """Settle the oldest stuck attempt; False when none is left."""
        now = self._clock.now()
        async with self._pool.acquire() as conn, conn.transaction():
            attempt = await store.stuck_attempt(conn, to_datetime(now - self._grace_s))
            if attempt is None or attempt["transfer_id"] in skipped:
                return False
            transfer_id = attempt["transfer_id"]
            bill = await store.bill_for_update(conn, attempt["bill_id"])
            assert bill is not None
            try:
                found = await self._bank.transfer(transfer_id)
                if found is not None and found.status == "completed" and payable(bill, now):
                    await finish_payment(conn, bill, attempt, now)
                    done.completed.append(transfer_id)
                    return True
                # The bill cannot take it, or the bank never made it: reverse, which also burns the id so that a
                # debit still in flight can never land.
                reversal = await self._bank.reverse(transfer_id, f"payment of bill {bill['bill_id']} not completed")
            except BankError as exc:
                log.warning("recovery could not reach the bank", extra={"error_type": type(exc).__name__})
                skipped.add(transfer_id)
                done.left.append(transfer_id)
                return True
            at = to_datetime(now)
            if reversal.status == "reversed":
                await ledger.book_reversal(
                    conn,
                    bill["bill_id"],
                    bill["merchant_id"],
                    attempt["card_id"],
                    transfer_id,
                    int(attempt["amount_fen"]),
                    at,
                )
                await store.end_attempt(conn, transfer_id, "reversed", at)
                done.reversed.append(transfer_id)
            else:
                await store.end_attempt(conn, transfer_id, "failed", at)
                done.failed.append(transfer_id)
        return True

    async def _settle_one_refund(self, done: Recovered, skipped: set[str]) -> bool:
        now = self._clock.now()
        async with self._pool.acquire() as conn, conn.transaction():
            refund = await store.stuck_refund(conn, to_datetime(now - self._grace_s))
            if refund is None or refund["refund_id"] in skipped:
                return False
            try:
                await self._bank.credit(
                    refund["refund_id"],
                    refund["card_id"],
                    int(refund["amount_fen"]),
                    f"refund of bill {refund['bill_id']}",
                )
            except BankError as exc:
                log.warning("recovery could not credit a refund", extra={"error_type": type(exc).__name__})
                skipped.add(refund["refund_id"])
                done.left.append(refund["refund_id"])
                return True
            bill = await store.bill_for_update(conn, refund["bill_id"])
            assert bill is not None
            await finish_refund(conn, bill, refund, now)
            done.refunds_credited.append(refund["refund_id"])
        return True

    async def run(self, interval_s: float) -> None:
        """A round at start and then every `interval_s` until cancelled."""
        while True:
            try:
                done = await self.run_once()
                if done.completed or done.reversed or done.failed or done.refunds_credited:
                    log.warning("payments recovered", extra=done.as_dict())
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("recovery round failed", extra={"error_type": type(exc).__name__})
            await asyncio.sleep(interval_s)
