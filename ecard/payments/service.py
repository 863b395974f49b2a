"""Bills that enrolled merchants pull up, paid with the card's PIN; refunds, callbacks and daily statements.

No bank call is made with a database transaction open: an attempt (or a refund) is claimed under a lease and
committed, the bank is called, and what it did is booked in a transaction of its own, fenced by the lease.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import asyncpg

from ecard.bank import BankAdapter, BankError, BankMismatch, BankTransfer, InsufficientFunds
from ecard.cards import Cards
from ecard.catalog import Catalog
from ecard.kit import audit
from ecard.kit.clock import Clock, iso, to_datetime
from ecard.kit.ids import new_id
from ecard.kit.infra import Conn
from ecard.kit.metrics import BANK_MISMATCHES
from ecard.kit.principal import Principal
from ecard.kit.refusal import Refusal
from ecard.merchants import Merchants
from ecard.payments import ledger, outbox, store
from ecard.payments.destinations import Destinations
from ecard.payments.ledger import PAYMENT_PREFIX, REFUND_PREFIX, day_bounds
from ecard.payments.models import (
    Attempt,
    Bill,
    BillAnswer,
    BillView,
    NewBill,
    NewRefund,
    NotificationAttempt,
    Paid,
    Refund,
    RefundAnswer,
    Statement,
    StatementBill,
    StatementRefund,
    Totals,
)

log = logging.getLogger("ecard.payments")

PULL_UP = "ecard://pay?bill_id={bill_id}"
LEASE_PREFIX = "lse"
# The longest Retry-After a pay of a bill being paid is told (its attempt settles within a minute).
RETRY_AFTER_MAX_S = 60
# A bank answer that does not match what was asked is not looked at again for this long: it waits for a person (the
# alert, `ecard payments recover`, `ecard ledger reconcile`), and the bill reads `paying` meanwhile.
MISMATCH_RECHECK_S = 3600.0


def pull_up_url(bill_id: str) -> str:
    return PULL_UP.format(bill_id=bill_id)


def body_hash(fields: dict[str, Any]) -> bytes:
    """SHA-256 of the request's canonical JSON (sorted keys, no spaces): what idempotency compares."""
    return hashlib.sha256(
        json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    ).digest()


def _ts(value: datetime | None) -> str | None:
    return iso(value.timestamp()) if value is not None else None


def is_open(bill: Bill, now: float) -> bool:
    """Pending and not past its expiry: a debit of it may still be taken (whether or not an attempt is under way)."""
    return bill.status == "pending" and bill.expires_at.timestamp() > now


def shown_status(bill: Bill, now: float) -> str:
    """The status a client sees: a pending bill with an unsettled payment is `paying`; past its expiry `expired`."""
    if bill.status == "pending":
        if bill.paying:
            return "paying"
        if bill.expires_at.timestamp() <= now:
            return "expired"
    return bill.status


def refuse_unpayable(bill: Bill, now: float) -> None:
    """Refuse to pay a bill that is not `pending`: 409 `payment_in_progress` (with Retry-After), else
    `bill_not_payable`."""
    status = shown_status(bill, now)
    if status == "paying":
        until = bill.paying_until.timestamp() if bill.paying_until is not None else now
        raise Refusal(
            "payment_in_progress",
            "a payment of this bill is being settled; ask again after Retry-After",
            retry_after=min(RETRY_AFTER_MAX_S, max(1, math.ceil(until - now))),
        )
    if status != "pending":
        raise Refusal("bill_not_payable", f"the bill is {status}")


def bill_answer(bill: Bill, now: float) -> BillAnswer:
    return BillAnswer(
        bill_id=bill.bill_id,
        out_bill_no=bill.out_bill_no,
        status=shown_status(bill, now),
        item_code=bill.item_code,
        amount_fen=bill.amount_fen,
        description=bill.description,
        notify_url=bill.notify_url,
        pull_up_url=pull_up_url(bill.bill_id),
        created_at=iso(bill.created_at.timestamp()),
        expires_at=iso(bill.expires_at.timestamp()),
        refunded_fen=bill.refunded_fen,
        paid_at=_ts(bill.paid_at),
        transaction_id=bill.transaction_id,
        closed_at=_ts(bill.closed_at),
    )


def refund_answer(refund: Refund) -> RefundAnswer:
    return RefundAnswer(
        refund_id=refund.refund_id,
        out_refund_no=refund.out_refund_no,
        bill_id=refund.bill_id,
        amount_fen=refund.amount_fen,
        reason=refund.reason,
        status=refund.state,
        created_at=iso(refund.created_at.timestamp()),
        refunded_at=_ts(refund.refunded_at),
    )


def bank_mismatch(operation: str, transfer_id: str, detail: str) -> None:
    """Alert: the bank's answer is not the movement asked for; nothing is booked on it, and it waits for a person."""
    BANK_MISMATCHES.labels(operation).inc()
    log.error(
        "bank answer does not match", extra={"operation": operation, "transfer_id": transfer_id, "detail": detail}
    )


def debit_matches(found: BankTransfer, attempt: Attempt) -> bool:
    return found.moves(attempt.card_id, "debit", attempt.amount_fen)


async def finish_payment(conn: Conn, bill: Bill, attempt: Attempt, now: float) -> bool:
    """The bank has the debit and the bill takes it: ledger, bill and callback in the caller's transaction.

    False (nothing done) when the caller no longer holds the attempt's lease (someone took it over)."""
    at = to_datetime(now)
    assert attempt.lease_token is not None
    if not await store.end_attempt(conn, attempt.transfer_id, attempt.lease_token, "succeeded", at):
        return False
    await ledger.book_payment(
        conn, bill.bill_id, bill.merchant_id, attempt.card_id, attempt.transfer_id, attempt.amount_fen, at
    )
    await store.mark_paid(conn, bill.bill_id, attempt.card_id, attempt.transfer_id, at)
    await outbox.enqueue(conn, "bill.paid", bill, bill.amount_fen, now, transaction_id=attempt.transfer_id)
    return True


async def finish_refund(conn: Conn, bill: Bill, refund: Refund, now: float) -> bool:
    """The bank has credited the card: the refund is done, booked and announced (once: False if it was already)."""
    at = to_datetime(now)
    if not await store.refund_succeeded(conn, refund.refund_id, at):
        return False
    await ledger.book_refund_credit(
        conn, bill.bill_id, bill.merchant_id, refund.card_id, refund.refund_id, refund.amount_fen, at
    )
    await outbox.enqueue(
        conn,
        "bill.refunded",
        bill,
        refund.amount_fen,
        now,
        refund_id=refund.refund_id,
        out_refund_no=refund.out_refund_no,
    )
    return True


async def credit_refund(pool: asyncpg.Pool, bank: BankAdapter, clock: Clock, refund: Refund) -> Refund:
    """Ask the bank to credit the card (idempotent on the refund id), with no transaction open; once it has, book it.

    The refund as it stands afterwards: `succeeded`, or still `processing` (no answer, or an answer that does not
    match, which is alerted and never booked) for recovery to finish."""
    try:
        credited = await bank.credit(
            refund.refund_id, refund.card_id, refund.amount_fen, f"refund of bill {refund.bill_id}"
        )
    except BankMismatch as exc:
        return await _refund_mismatch(pool, clock, refund, str(exc))
    except BankError as exc:
        log.warning("bank credit failed", extra={"refund_id": refund.refund_id, "error_type": type(exc).__name__})
        return refund
    if not credited.moves(refund.card_id, "credit", refund.amount_fen):
        return await _refund_mismatch(pool, clock, refund, "the credit the bank holds is for another card or amount")
    async with pool.acquire() as conn, conn.transaction():
        locked = await store.refund_for_update(conn, refund.refund_id)
        assert locked is not None
        if locked.state == "processing":
            bill = await store.bill(conn, locked.bill_id)
            assert bill is not None
            await finish_refund(conn, bill, locked, clock.now())
        done = await store.refund(conn, refund.refund_id)
    assert done is not None
    return done


async def _refund_mismatch(pool: asyncpg.Pool, clock: Clock, refund: Refund, detail: str) -> Refund:
    bank_mismatch("credit", refund.refund_id, detail)
    await store.extend_refund(pool, refund.refund_id, to_datetime(clock.now() + MISMATCH_RECHECK_S))
    return refund


@dataclass(frozen=True)
class BillCreated:
    bill: BillAnswer
    created: bool


@dataclass(frozen=True)
class RefundMade:
    refund: RefundAnswer
    created: bool


class Payments:
    def __init__(
        self,
        pool: asyncpg.Pool,
        clock: Clock,
        merchants: Merchants,
        catalog: Catalog,
        cards: Cards,
        bank: BankAdapter | None,
        wake_callbacks: Callable[[], None],
        destinations: Destinations,
        lease_s: float,
    ) -> None:
        self._pool = pool
        self._clock = clock
        self._merchants = merchants
        self._catalog = catalog
        self._cards = cards
        self._bank = bank
        self._wake = wake_callbacks
        self._destinations = destinations
        # how long a pay (or refund) request holds its attempt before recovery may settle it instead
        self._lease_s = lease_s

    def _need_bank(self) -> BankAdapter:
        if self._bank is None:
            raise Refusal("bank_unavailable", "no bank is configured (ECARD_BANK_URL)")
        return self._bank

    async def create_bill(self, merchant_id: str, data: NewBill) -> BillCreated:
        """A new bill, or the same one again for the same number and body (idempotent on out_bill_no)."""
        self._destinations.check(data.notify_url)
        now = self._clock.now()
        merchant = await self._merchants.get(merchant_id)
        if merchant is None or merchant.status != "active":
            raise Refusal("forbidden", "the merchant is not active")
        item = await self._catalog.item(data.item_code, to_datetime(now).date())
        if item is None:
            raise Refusal("item_unknown", "no catalog item in force has this code")
        if "payment" not in item.functions:
            raise Refusal("merchant_not_entitled", "this item is not a payment item (缴费支付)")
        if data.item_code not in merchant.items or "payment" not in merchant.functions:
            raise Refusal("merchant_not_entitled", "the merchant is not entitled to take payments for this item")
        digest = body_hash(
            {
                "out_bill_no": data.out_bill_no,
                "item_code": data.item_code,
                "amount_fen": data.amount_fen,
                "description": data.description,
                "notify_url": data.notify_url,
                "expires_in_s": data.expires_in_s,
            }
        )
        created = await store.insert_bill(
            self._pool,
            new_id("bil"),
            merchant_id,
            data.out_bill_no,
            digest,
            data.item_code,
            data.amount_fen,
            data.description,
            data.notify_url,
            to_datetime(now),
            to_datetime(now + data.expires_in_s),
        )
        bill = await store.bill_by_out_no(self._pool, merchant_id, data.out_bill_no)
        assert bill is not None
        if not created and not hmac.compare_digest(bill.body_hash, digest):
            raise Refusal("idempotency_conflict", "this out_bill_no was used for a bill with another body")
        return BillCreated(bill_answer(bill, now), created)

    async def _merchant_bill(self, merchant_id: str, bill_id: str) -> Bill:
        bill = await store.bill(self._pool, bill_id)
        # another merchant's bill is as absent as one that does not exist
        if bill is None or bill.merchant_id != merchant_id:
            raise Refusal("not_found", "this merchant has no bill with this id")
        return bill

    async def bill_for_merchant(self, merchant_id: str, bill_id: str) -> BillAnswer:
        return bill_answer(await self._merchant_bill(merchant_id, bill_id), self._clock.now())

    async def bill_by_out_no(self, merchant_id: str, out_bill_no: str) -> BillAnswer:
        bill = await store.bill_by_out_no(self._pool, merchant_id, out_bill_no)
        if bill is None:
            raise Refusal("not_found", "this merchant has no bill with this out_bill_no")
        return bill_answer(bill, self._clock.now())

    async def link(self, merchant_id: str, bill_id: str) -> str:
        """The pull-up link of one of the merchant's bills, for the counter's QR."""
        return pull_up_url((await self._merchant_bill(merchant_id, bill_id)).bill_id)

    async def view(self, bill_id: str) -> BillView:
        """What the citizen's app shows before the PIN: merchant, item, amount, status."""
        bill = await store.bill(self._pool, bill_id)
        if bill is None:
            raise Refusal("not_found", "no bill has this id")
        now = self._clock.now()
        merchant = await self._merchants.get(bill.merchant_id)
        item = next((i for i in await self._catalog.items() if i.item_code == bill.item_code), None)
        return BillView(
            bill_id=bill.bill_id,
            merchant_name=merchant.name if merchant else "",
            item_code=bill.item_code,
            item_name=item.name if item else bill.item_code,
            amount_fen=bill.amount_fen,
            description=bill.description,
            status=shown_status(bill, now),
            expires_at=iso(bill.expires_at.timestamp()),
        )

    async def close(self, merchant_id: str, bill_id: str) -> BillAnswer:
        """Close a pending (or expired) bill; closing a closed bill again is a no-op."""
        now = self._clock.now()
        async with self._pool.acquire() as conn, conn.transaction():
            bill = await store.bill_for_update(conn, bill_id)
            if bill is None or bill.merchant_id != merchant_id:
                raise Refusal("not_found", "this merchant has no bill with this id")
            if bill.status == "pending":
                if await store.live_attempt(conn, bill_id) is not None:
                    raise Refusal("bill_not_closable", "a payment of this bill is in progress")
                await store.close_bill(conn, bill_id, to_datetime(now))
                await outbox.enqueue(conn, "bill.closed", bill, bill.amount_fen, now)
            elif bill.status != "closed":
                raise Refusal("bill_not_closable", f"a {bill.status} bill cannot be closed")
            bill = await store.bill(conn, bill_id)
            assert bill is not None
        self._wake()
        return bill_answer(bill, now)

    async def _payee_checks(self, conn: Conn, bill: Bill, now: float) -> None:
        """The merchant still takes payments for the bill's item, rechecked in the claim's transaction: the merchant
        active (else 409 `bill_not_payable`), entitled to the item with the payment function, and the item in force
        and a payment item (else 403 `merchant_not_entitled`). The merchant's row is share-locked until the claim
        commits, so a merchant disabled meanwhile is disabled either before the claim or after it."""
        merchant = await self._merchants.held(conn, bill.merchant_id)
        if merchant is None or merchant.status != "active":
            raise Refusal("bill_not_payable", "the merchant of this bill no longer takes payments")
        if bill.item_code not in merchant.items or "payment" not in merchant.functions:
            raise Refusal("merchant_not_entitled", "the merchant is no longer entitled to take payments for this item")
        item = await self._catalog.item(bill.item_code, to_datetime(now).date())
        if item is None or "payment" not in item.functions:
            raise Refusal("merchant_not_entitled", "the bill's item is no longer a payment item in force")

    async def pay(self, device: Principal, bill_id: str, pin: str) -> Paid:
        """Pay a bill with the card's PIN: claim the bill, debit the bank, then book it all in one transaction."""
        bank = self._need_bank()
        bill = await store.bill(self._pool, bill_id)
        if bill is None:
            raise Refusal("not_found", "no bill has this id")
        card = await self._cards.device_card(device.owner_id)
        refuse_unpayable(bill, self._clock.now())
        transfer_id = new_id(PAYMENT_PREFIX.rstrip("_"))
        lease = new_id(LEASE_PREFIX)
        now = self._clock.now()
        async with self._pool.acquire() as conn, conn.transaction():
            bill = await store.bill_for_update(conn, bill_id)
            assert bill is not None
            refuse_unpayable(bill, now)
            await self._payee_checks(conn, bill, now)
            if not await store.claim_attempt(
                conn,
                transfer_id,
                bill_id,
                card.card_id,
                device.owner_id,
                bill.amount_fen,
                to_datetime(now),
                lease,
                to_datetime(now + self._lease_s),
            ):
                raise Refusal("bill_not_payable", "the bill is paid, being paid, closed or expired")
        # Claimed before the PIN is checked: a second concurrent pay of the bill is refused at once, and a wrong
        # PIN gives the bill back.
        try:
            await self._cards.check_pin(device, card.card_id, pin, purpose="payment", subject=bill_id)
        except Refusal:
            await store.end_attempt(self._pool, transfer_id, lease, "failed", to_datetime(self._clock.now()))
            raise
        # the bank call gets a lease of its own: a slow PIN turn must not leave it to recovery half-way
        now = self._clock.now()
        if not await store.renew_attempt(self._pool, transfer_id, lease, to_datetime(now + self._lease_s)):
            raise Refusal(
                "payment_in_progress", "recovery took this payment over; ask again after Retry-After", retry_after=1
            )
        try:
            debited = await bank.debit(transfer_id, card.card_id, bill.amount_fen, f"bill {bill_id}")
        except InsufficientFunds as exc:
            await store.end_attempt(self._pool, transfer_id, lease, "failed", to_datetime(self._clock.now()))
            raise Refusal("insufficient_funds", "the card's account holds less than the bill") from exc
        except BankMismatch as exc:
            bank_mismatch("debit", transfer_id, str(exc))
            raise Refusal(
                "bank_unavailable", "the bank's answer did not match the payment; it is being looked into"
            ) from exc
        except BankError as exc:
            # The outcome is unknown: the attempt stays claimed and the recovery job settles it with the bank.
            log.warning("bank debit failed", extra={"transfer_id": transfer_id, "error_type": type(exc).__name__})
            raise Refusal("bank_unavailable", "the bank did not confirm the payment; it is being settled") from exc
        if debited.status != "completed":
            # reversed already: recovery took the attempt over, and books the reversal
            raise Refusal(
                "payment_in_progress", "the payment is being settled; ask again after Retry-After", retry_after=1
            )
        return await self._commit_payment(transfer_id, lease)

    async def _commit_payment(self, transfer_id: str, lease: str) -> Paid:
        now = self._clock.now()
        async with self._pool.acquire() as conn, conn.transaction():
            # attempt before bill: the recovery job locks in the same order
            attempt = await store.attempt_for_update(conn, transfer_id)
            assert attempt is not None
            bill = await store.bill_for_update(conn, attempt.bill_id)
            assert bill is not None
            if attempt.state == "claimed":
                if attempt.lease_token != lease or not await finish_payment(conn, bill, attempt, now):
                    # recovery holds it now and books what the bank did
                    raise Refusal(
                        "payment_in_progress",
                        "the payment is being settled; ask again after Retry-After",
                        retry_after=1,
                    )
                bill = await store.bill(conn, attempt.bill_id)
                assert bill is not None
            elif attempt.state != "succeeded":
                raise Refusal("bill_not_payable", "the payment was reversed by recovery")
        self._wake()
        assert bill.paid_at is not None
        return Paid(status="paid", transaction_id=transfer_id, paid_at=iso(bill.paid_at.timestamp()))

    async def refund(self, merchant_id: str, bill_id: str, data: NewRefund) -> RefundMade:
        """Give some or all of a paid bill back to the card; never more than was paid, idempotent on out_refund_no.

        Granted and booked against the merchant under the bill's lock (so concurrent refunds take turns), committed
        with a lease; then the bank credits the card, with no transaction open; then the credit is booked."""
        bank = self._need_bank()
        now = self._clock.now()
        digest = body_hash(
            {
                "bill_id": bill_id,
                "out_refund_no": data.out_refund_no,
                "amount_fen": data.amount_fen,
                "reason": data.reason,
            }
        )
        async with self._pool.acquire() as conn, conn.transaction():
            bill = await store.bill_for_update(conn, bill_id)
            if bill is None or bill.merchant_id != merchant_id:
                raise Refusal("not_found", "this merchant has no bill with this id")
            existing = await store.refund_by_out_no(conn, merchant_id, data.out_refund_no)
            if existing is not None:
                if not hmac.compare_digest(existing.body_hash, digest):
                    raise Refusal("idempotency_conflict", "this out_refund_no was used for a refund with another body")
                return RefundMade(refund_answer(existing), created=False)
            if bill.status not in {"paid", "refunded"} or bill.refunded_fen + data.amount_fen > bill.amount_fen:
                raise Refusal(
                    "refund_exceeds_paid",
                    "refunds would exceed what was paid for the bill",
                    extra={"refundable_fen": bill.amount_fen - bill.refunded_fen if bill.paid_at else 0},
                )
            assert bill.card_id is not None
            granted = Refund(
                refund_id=new_id(REFUND_PREFIX.rstrip("_")),
                bill_id=bill_id,
                merchant_id=merchant_id,
                out_refund_no=data.out_refund_no,
                body_hash=digest,
                amount_fen=data.amount_fen,
                reason=data.reason,
                card_id=bill.card_id,
                state="processing",
                created_at=to_datetime(now),
                refunded_at=None,
                leased_until=to_datetime(now + self._lease_s),
                lease_token=new_id(LEASE_PREFIX),
            )
            await store.insert_refund(conn, granted)
            await store.add_refunded(conn, bill_id, data.amount_fen)
            await ledger.book_refund(conn, bill_id, merchant_id, granted.refund_id, data.amount_fen, to_datetime(now))
            await audit.record(conn, merchant_id, "payment.refund", bill_id, {"refund_id": granted.refund_id})
        done = await credit_refund(self._pool, bank, self._clock, granted)
        self._wake()
        return RefundMade(refund_answer(done), created=True)

    async def notifications(self, merchant_id: str, bill_id: str) -> list[NotificationAttempt]:
        await self._merchant_bill(merchant_id, bill_id)
        return [
            NotificationAttempt(
                event_id=row.event_id,
                event=row.event,
                attempted_at=iso(row.attempted_at.timestamp()),
                http_status=row.http_status,
                error=row.error,
            )
            for row in await store.notification_attempts(self._pool, bill_id)
        ]

    async def statement(self, merchant_id: str, day: date) -> Statement:
        """The merchant's bills paid and refunds granted on `day` (UTC); the totals are the ledger's."""
        start, end = day_bounds(day)
        bills = await store.paid_bills_between(self._pool, merchant_id, start, end)
        refunds = await store.refunds_between(self._pool, merchant_id, start, end)
        booked = await store.merchant_ledger_between(self._pool, merchant_id, start, end)
        paid_fen = booked.get("settle", 0)
        refunded_fen = -booked.get("refund", 0)
        return Statement(
            date=day.isoformat(),
            merchant_id=merchant_id,
            bills=[
                StatementBill(
                    bill_id=b.bill_id,
                    out_bill_no=b.out_bill_no,
                    item_code=b.item_code,
                    amount_fen=b.amount_fen,
                    paid_at=iso(b.paid_at.timestamp()),
                    transaction_id=b.transaction_id,
                )
                for b in bills
            ],
            refunds=[
                StatementRefund(
                    refund_id=r.refund_id,
                    out_refund_no=r.out_refund_no,
                    bill_id=r.bill_id,
                    amount_fen=r.amount_fen,
                    status=r.state,
                    created_at=iso(r.created_at.timestamp()),
                    refunded_at=_ts(r.refunded_at),
                )
                for r in refunds
            ],
            totals=Totals(
                paid_count=len(bills),
                paid_fen=paid_fen,
                refund_count=len(refunds),
                refunded_fen=refunded_fen,
                net_fen=paid_fen - refunded_fen,
            ),
        )


def statement_day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise Refusal("invalid_request", "date must be YYYY-MM-DD", extra={"fields": ["date"]}) from exc
