"""Bills that enrolled merchants pull up, paid with the card's PIN; refunds, callbacks and daily statements."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from ecard.bank import BankAdapter, BankError, InsufficientFunds
from ecard.cards import Cards
from ecard.catalog import Catalog
from ecard.kit import audit
from ecard.kit.clock import Clock, iso, to_datetime
from ecard.kit.ids import new_id
from ecard.kit.infra import Conn
from ecard.kit.principal import Principal
from ecard.kit.refusal import Refusal
from ecard.merchants import Merchants
from ecard.payments import ledger, outbox, store
from ecard.payments.ledger import PAYMENT_PREFIX, REFUND_PREFIX, day_bounds
from ecard.payments.models import (
    BillAnswer,
    BillView,
    NewBill,
    NewRefund,
    NotificationAttempt,
    Paid,
    RefundAnswer,
    Statement,
    StatementBill,
    StatementRefund,
    Totals,
)

log = logging.getLogger("ecard.payments")

PULL_UP = "ecard://pay?bill_id={bill_id}"


def pull_up_url(bill_id: str) -> str:
    return PULL_UP.format(bill_id=bill_id)


def body_hash(fields: dict[str, Any]) -> bytes:
    """SHA-256 of the request's canonical JSON (sorted keys, no spaces): what idempotency compares."""
    return hashlib.sha256(
        json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    ).digest()


def _ts(value: datetime | None) -> str | None:
    return iso(value.timestamp()) if value is not None else None


def shown_status(bill: dict[str, Any], now: float) -> str:
    """The status a client sees: a pending bill past its expiry is `expired`."""
    if bill["status"] == "pending" and bill["expires_at"].timestamp() <= now:
        return "expired"
    return str(bill["status"])


def payable(bill: dict[str, Any], now: float) -> bool:
    return shown_status(bill, now) == "pending"


def bill_answer(bill: dict[str, Any], now: float) -> BillAnswer:
    return BillAnswer(
        bill_id=bill["bill_id"],
        out_bill_no=bill["out_bill_no"],
        status=shown_status(bill, now),
        item_code=bill["item_code"],
        amount_fen=int(bill["amount_fen"]),
        description=bill["description"],
        notify_url=bill["notify_url"],
        pull_up_url=pull_up_url(bill["bill_id"]),
        created_at=iso(bill["created_at"].timestamp()),
        expires_at=iso(bill["expires_at"].timestamp()),
        refunded_fen=int(bill["refunded_fen"]),
        paid_at=_ts(bill["paid_at"]),
        transaction_id=bill["transaction_id"],
        closed_at=_ts(bill["closed_at"]),
    )


def refund_answer(refund: dict[str, Any]) -> RefundAnswer:
    return RefundAnswer(
        refund_id=refund["refund_id"],
        out_refund_no=refund["out_refund_no"],
        bill_id=refund["bill_id"],
        amount_fen=int(refund["amount_fen"]),
        reason=refund["reason"],
        status=refund["state"],
        created_at=iso(refund["created_at"].timestamp()),
        refunded_at=_ts(refund["refunded_at"]),
    )


async def finish_payment(conn: Conn, bill: dict[str, Any], attempt: dict[str, Any], now: float) -> None:
    """The bank has the debit and the bill takes it: ledger, bill and callback in the caller's transaction."""
    at = to_datetime(now)
    await store.end_attempt(conn, attempt["transfer_id"], "succeeded", at)
    await ledger.book_payment(
        conn,
        bill["bill_id"],
        bill["merchant_id"],
        attempt["card_id"],
        attempt["transfer_id"],
        int(attempt["amount_fen"]),
        at,
    )
    await store.mark_paid(conn, bill["bill_id"], attempt["card_id"], attempt["transfer_id"], at)
    await outbox.enqueue(conn, "bill.paid", bill, int(bill["amount_fen"]), now, transaction_id=attempt["transfer_id"])


async def finish_refund(conn: Conn, bill: dict[str, Any], refund: dict[str, Any], now: float) -> None:
    """The bank has credited the card: the refund is done, booked and announced."""
    at = to_datetime(now)
    await store.refund_succeeded(conn, refund["refund_id"], at)
    await ledger.book_refund_credit(
        conn,
        bill["bill_id"],
        bill["merchant_id"],
        refund["card_id"],
        refund["refund_id"],
        int(refund["amount_fen"]),
        at,
    )
    await outbox.enqueue(
        conn,
        "bill.refunded",
        bill,
        int(refund["amount_fen"]),
        now,
        refund_id=refund["refund_id"],
        out_refund_no=refund["out_refund_no"],
    )


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
        redis: aioredis.Redis,
        prefix: str,
        clock: Clock,
        merchants: Merchants,
        catalog: Catalog,
        cards: Cards,
        bank: BankAdapter | None,
        wake_callbacks: Callable[[], None],
    ) -> None:
        self._pool = pool
        self._redis = redis
        self._prefix = prefix
        self._clock = clock
        self._merchants = merchants
        self._catalog = catalog
        self._cards = cards
        self._bank = bank
        self._wake = wake_callbacks

    def _need_bank(self) -> BankAdapter:
        if self._bank is None:
            raise Refusal("bank_unavailable", "no bank is configured (ECARD_BANK_URL)")
        return self._bank

    async def create_bill(self, merchant_id: str, data: NewBill) -> BillCreated:
        """A new bill, or the same one again for the same number and body (idempotent on out_bill_no)."""
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
        if not created and not hmac.compare_digest(bytes(bill["body_hash"]), digest):
            raise Refusal("idempotency_conflict", "this out_bill_no was used for a bill with another body")
        return BillCreated(bill_answer(bill, now), created)

    async def _merchant_bill(self, merchant_id: str, bill_id: str) -> dict[str, Any]:
        bill = await store.bill(self._pool, bill_id)
        # another merchant's bill is as absent as one that does not exist
        if bill is None or bill["merchant_id"] != merchant_id:
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
        return pull_up_url((await self._merchant_bill(merchant_id, bill_id))["bill_id"])

    async def view(self, bill_id: str) -> BillView:
        """What the citizen's app shows before the PIN: merchant, item, amount, status."""
        bill = await store.bill(self._pool, bill_id)
        if bill is None:
            raise Refusal("not_found", "no bill has this id")
        now = self._clock.now()
        merchant = await self._merchants.get(bill["merchant_id"])
        item = next((i for i in await self._catalog.items() if i.item_code == bill["item_code"]), None)
        return BillView(
            bill_id=bill["bill_id"],
            merchant_name=merchant.name if merchant else "",
            item_code=bill["item_code"],
            item_name=item.name if item else bill["item_code"],
            amount_fen=int(bill["amount_fen"]),
            description=bill["description"],
            status=shown_status(bill, now),
            expires_at=iso(bill["expires_at"].timestamp()),
        )

    async def close(self, merchant_id: str, bill_id: str) -> BillAnswer:
        """Close a pending (or expired) bill; closing a closed bill again is a no-op."""
        now = self._clock.now()
        async with self._pool.acquire() as conn, conn.transaction():
            bill = await store.bill_for_update(conn, bill_id)
            if bill is None or bill["merchant_id"] != merchant_id:
                raise Refusal("not_found", "this merchant has no bill with this id")
            if bill["status"] == "pending":
                if await store.live_attempt(conn, bill_id) is not None:
                    raise Refusal("bill_not_closable", "a payment of this bill is in progress")
                await store.close_bill(conn, bill_id, to_datetime(now))
                await outbox.enqueue(conn, "bill.closed", bill, int(bill["amount_fen"]), now)
            elif bill["status"] != "closed":
                raise Refusal("bill_not_closable", f"a {bill['status']} bill cannot be closed")
            bill = await store.bill(conn, bill_id)
            assert bill is not None
        self._wake()
        return bill_answer(bill, now)

    async def pay(self, device: Principal, bill_id: str, pin: str) -> Paid:
        """Pay a bill with the card's PIN: claim the bill, debit the bank, then book it all in one transaction."""
        bank = self._need_bank()
        bill = await store.bill(self._pool, bill_id)
        if bill is None:
            raise Refusal("not_found", "no bill has this id")
        card = await self._cards.device_card(device.owner_id)
        if not payable(bill, self._clock.now()):
            raise Refusal("bill_not_payable", f"the bill is {shown_status(bill, self._clock.now())}")
        transfer_id = new_id(PAYMENT_PREFIX.rstrip("_"))
        now = self._clock.now()
        async with self._pool.acquire() as conn, conn.transaction():
            bill = await store.bill_for_update(conn, bill_id)
            assert bill is not None
            if not payable(bill, now) or not await store.claim_attempt(
                conn,
                transfer_id,
                bill_id,
                card.card_id,
                device.owner_id,
                int(bill["amount_fen"]),
                to_datetime(now),
            ):
                raise Refusal("bill_not_payable", "the bill is paid, being paid, closed or expired")
        # Claimed before the PIN is checked: a second concurrent pay of the bill is refused at once, and a wrong
        # PIN gives the bill back.
        try:
            await self._cards.check_pin(device, card.card_id, pin, purpose="payment", subject=bill_id)
        except Refusal:
            await store.end_attempt(self._pool, transfer_id, "failed", to_datetime(self._clock.now()))
            raise
        try:
            await bank.debit(transfer_id, card.card_id, int(bill["amount_fen"]), f"bill {bill_id}")
        except InsufficientFunds as exc:
            await store.end_attempt(self._pool, transfer_id, "failed", to_datetime(self._clock.now()))
            raise Refusal("insufficient_funds", "the card's account holds less than the bill") from exc
        except BankError as exc:
            # The outcome is unknown: the attempt stays claimed and the recovery job settles it with the bank.
            log.warning("bank debit failed", extra={"transfer_id": transfer_id, "error_type": type(exc).__name__})
            raise Refusal("bank_unavailable", "the bank did not confirm the payment; it is being settled") from exc
        return await self._commit_payment(transfer_id)

    async def _commit_payment(self, transfer_id: str) -> Paid:
        now = self._clock.now()
        async with self._pool.acquire() as conn, conn.transaction():
            # attempt before bill: the recovery job locks in the same order
            attempt = await store.attempt_for_update(conn, transfer_id)
            assert attempt is not None
            bill = await store.bill_for_update(conn, attempt["bill_id"])
            assert bill is not None
            if attempt["state"] == "claimed":
                await finish_payment(conn, bill, attempt, now)
                bill = await store.bill(conn, attempt["bill_id"])
                assert bill is not None
            elif attempt["state"] != "succeeded":
                raise Refusal("bill_not_payable", "the payment was reversed by recovery")
        self._wake()
        return Paid(status="paid", transaction_id=transfer_id, paid_at=iso(bill["paid_at"].timestamp()))

    async def refund(self, merchant_id: str, bill_id: str, data: NewRefund) -> RefundMade:
        """Give some or all of a paid bill back to the card; never more than was paid, idempotent on out_refund_no."""
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
            if bill is None or bill["merchant_id"] != merchant_id:
                raise Refusal("not_found", "this merchant has no bill with this id")
            existing = await store.refund_by_out_no(conn, merchant_id, data.out_refund_no)
            if existing is not None:
                if not hmac.compare_digest(bytes(existing["body_hash"]), digest):
                    raise Refusal("idempotency_conflict", "this out_refund_no was used for a refund with another body")
                return RefundMade(refund_answer(existing), created=False)
            if (
                bill["status"] not in {"paid", "refunded"}
                or bill["refunded_fen"] + data.amount_fen > bill["amount_fen"]
            ):
                raise Refusal(
                    "refund_exceeds_paid",
                    "refunds would exceed what was paid for the bill",
                    extra={"refundable_fen": int(bill["amount_fen"] - bill["refunded_fen"]) if bill["paid_at"] else 0},
                )
            refund_id = new_id(REFUND_PREFIX.rstrip("_"))
            await store.insert_refund(
                conn,
                refund_id,
                bill_id,
                merchant_id,
                data.out_refund_no,
                digest,
                data.amount_fen,
                data.reason,
                bill["card_id"],
                to_datetime(now),
            )
            await store.add_refunded(conn, bill_id, data.amount_fen)
            await ledger.book_refund(conn, bill_id, merchant_id, refund_id, data.amount_fen, to_datetime(now))
            await audit.record(conn, merchant_id, "payment.refund", bill_id, {"refund_id": refund_id})
        return RefundMade(await self.credit_refund(bank, refund_id), created=True)

    async def credit_refund(self, bank: BankAdapter, refund_id: str) -> RefundAnswer:
        """Ask the bank to credit the card (idempotent on the refund id) and, once it has, book it."""
        async with self._pool.acquire() as conn, conn.transaction():
            refund = await store.refund_for_update(conn, refund_id)
            assert refund is not None
            if refund["state"] == "processing":
                try:
                    await bank.credit(
                        refund_id, refund["card_id"], int(refund["amount_fen"]), f"refund of bill {refund['bill_id']}"
                    )
                except BankError as exc:
                    log.warning("bank credit failed", extra={"refund_id": refund_id, "error_type": type(exc).__name__})
                    return refund_answer(refund)
                bill = await store.bill_for_update(conn, refund["bill_id"])
                assert bill is not None
                await finish_refund(conn, bill, refund, self._clock.now())
                refund = await store.refund_for_update(conn, refund_id)
                assert refund is not None
        self._wake()
        return refund_answer(refund)

    async def notifications(self, merchant_id: str, bill_id: str) -> list[NotificationAttempt]:
        await self._merchant_bill(merchant_id, bill_id)
        return [
            NotificationAttempt(
                event_id=row["event_id"],
                event=row["event"],
                attempted_at=iso(row["attempted_at"].timestamp()),
                http_status=row["http_status"],
                error=row["error"],
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
                    bill_id=b["bill_id"],
                    out_bill_no=b["out_bill_no"],
                    item_code=b["item_code"],
                    amount_fen=int(b["amount_fen"]),
                    paid_at=iso(b["paid_at"].timestamp()),
                    transaction_id=b["transaction_id"],
                )
                for b in bills
            ],
            refunds=[
                StatementRefund(
                    refund_id=r["refund_id"],
                    out_refund_no=r["out_refund_no"],
                    bill_id=r["bill_id"],
                    amount_fen=int(r["amount_fen"]),
                    status=r["state"],
                    created_at=iso(r["created_at"].timestamp()),
                    refunded_at=_ts(r["refunded_at"]),
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
