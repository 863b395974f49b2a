"""Settles payments and refunds left half-way (a crash or a bank timeout between the bank and the local commit)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

import asyncpg

from ecard.bank import BankAdapter, BankError, BankMismatch, BankTransfer
from ecard.kit.clock import Clock, to_datetime
from ecard.kit.ids import new_id
from ecard.payments import ledger, store
from ecard.payments.models import Attempt, Bill
from ecard.payments.service import (
    LEASE_PREFIX,
    MISMATCH_RECHECK_S,
    bank_mismatch,
    credit_refund,
    debit_matches,
    finish_payment,
    is_open,
)

log = logging.getLogger("ecard.payments.recovery")


@dataclass
class Recovered:
    """What one recovery round did, by transfer id."""

    completed: list[str] = field(default_factory=list)
    reversed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    refunds_credited: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, list[str]]:
        return {
            "completed": self.completed,
            "reversed": self.reversed,
            "failed": self.failed,
            "refunds_credited": self.refunds_credited,
            "mismatched": self.mismatched,
            "left": self.left,
        }


class Recovery:
    """Settles attempts and refunds whose holder's lease ran out (its request crashed, or gave up on the bank).

    Each is leased first (committed), so any number of workers may run rounds at once and each attempt is settled
    by one of them; the bank is asked with no transaction open, and what it says is booked under the lease."""

    def __init__(self, pool: asyncpg.Pool, clock: Clock, bank: BankAdapter, lease_s: float) -> None:
        self._pool = pool
        self._clock = clock
        self._bank = bank
        # how long a round holds what it settles: longer than its bank calls (ECARD_PAYMENT_RECOVERY_GRACE_S)
        self._lease_s = lease_s

    async def run_once(self) -> Recovered:
        done = Recovered()
        # what a round cannot settle keeps its lease, so the round moves on and the next one tries again
        while await self._settle_one_payment(done):
            pass
        while await self._settle_one_refund(done):
            pass
        return done

    async def _settle_one_payment(self, done: Recovered) -> bool:
        """Settle the oldest attempt whose lease ran out; False when none is left."""
        now = self._clock.now()
        token = new_id(LEASE_PREFIX)
        attempt = await store.lease_stuck_attempt(self._pool, to_datetime(now), token, to_datetime(now + self._lease_s))
        if attempt is None:
            return False
        try:
            found = await self._bank.transfer(attempt.transfer_id)
            if found is not None and found.status == "completed":
                if not debit_matches(found, attempt):
                    await self._mismatch(attempt, "the debit the bank holds is for another card, amount or direction")
                    done.mismatched.append(attempt.transfer_id)
                    return True
                outcome = await self._complete(attempt)
                if outcome == "completed":
                    done.completed.append(attempt.transfer_id)
                if outcome != "bill_closed":
                    return True
            # The bill cannot take it, or the bank never made it: reverse, which also burns the id so that a debit
            # still in flight can never land.
            reversal = await self._bank.reverse(attempt.transfer_id, f"payment of bill {attempt.bill_id} not completed")
        except BankMismatch as exc:
            await self._mismatch(attempt, str(exc))
            done.mismatched.append(attempt.transfer_id)
            return True
        except BankError as exc:
            log.warning("recovery could not reach the bank", extra={"error_type": type(exc).__name__})
            done.left.append(attempt.transfer_id)
            return True
        if reversal.status == "reversed" and not debit_matches(reversal, attempt):
            await self._mismatch(attempt, "the reversed debit at the bank is for another card, amount or direction")
            done.mismatched.append(attempt.transfer_id)
            return True
        ended = await self._book_reversal(attempt, reversal)
        if ended == "reversed":
            done.reversed.append(attempt.transfer_id)
        elif ended == "failed":
            done.failed.append(attempt.transfer_id)
        return True

    async def _complete(self, attempt: Attempt) -> str:
        """Book the bank's debit as the bill's payment: `completed`; `bill_closed` when the bill can no longer take
        it (expired meanwhile: the debit is to be reversed); `lost` when someone else holds the attempt now."""
        now = self._clock.now()
        async with self._pool.acquire() as conn, conn.transaction():
            # attempt before bill, as the pay path locks them
            locked = await store.attempt_for_update(conn, attempt.transfer_id)
            bill = await store.bill_for_update(conn, attempt.bill_id)
            assert locked is not None
            assert bill is not None
            if locked.state != "claimed" or locked.lease_token != attempt.lease_token:
                return "lost"
            if not is_open(bill, now):
                return "bill_closed"
            return "completed" if await finish_payment(conn, bill, locked, now) else "lost"

    async def _book_reversal(self, attempt: Attempt, reversal: BankTransfer) -> str | None:
        """The bank gave the debit back (or burnt its id): the attempt ends so, unless someone else holds it now."""
        now = self._clock.now()
        at = to_datetime(now)
        assert attempt.lease_token is not None
        async with self._pool.acquire() as conn, conn.transaction():
            locked = await store.attempt_for_update(conn, attempt.transfer_id)
            bill: Bill | None = await store.bill_for_update(conn, attempt.bill_id)
            assert locked is not None
            assert bill is not None
            if locked.state != "claimed" or locked.lease_token != attempt.lease_token:
                return None
            if reversal.status == "reversed":
                await ledger.book_reversal(
                    conn, bill.bill_id, bill.merchant_id, attempt.card_id, attempt.transfer_id, attempt.amount_fen, at
                )
                await store.end_attempt(conn, attempt.transfer_id, attempt.lease_token, "reversed", at)
                return "reversed"
            await store.end_attempt(conn, attempt.transfer_id, attempt.lease_token, "failed", at)
            return "failed"

    async def _mismatch(self, attempt: Attempt, detail: str) -> None:
        bank_mismatch("recovery", attempt.transfer_id, detail)
        await store.extend_attempt(self._pool, attempt.transfer_id, to_datetime(self._clock.now() + MISMATCH_RECHECK_S))

    async def _settle_one_refund(self, done: Recovered) -> bool:
        now = self._clock.now()
        refund = await store.lease_stuck_refund(
            self._pool, to_datetime(now), new_id(LEASE_PREFIX), to_datetime(now + self._lease_s)
        )
        if refund is None:
            return False
        settled = await credit_refund(self._pool, self._bank, self._clock, refund)
        if settled.state == "succeeded":
            done.refunds_credited.append(refund.refund_id)
        else:
            done.left.append(refund.refund_id)
        return True

    async def run(self, interval_s: float) -> None:
        """A round at start and then every `interval_s` until cancelled."""
        while True:
            try:
                done = await self.run_once()
                if done.completed or done.reversed or done.failed or done.refunds_credited or done.mismatched:
                    log.warning("payments recovered", extra=done.as_dict())
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("recovery round failed", extra={"error_type": type(exc).__name__})
            await asyncio.sleep(interval_s)
