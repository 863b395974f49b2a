"""The double-entry ledger: which accounts each movement touches, the ledger check, and reconciliation with the bank."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import asyncpg

from ecard.bank import BankAdapter, BankTransfer
from ecard.kit.ids import new_id
from ecard.kit.infra import Conn
from ecard.payments import store
from ecard.payments.models import BankMovement

CLEARING = "clearing"
REFUNDS = "refunds"
# The prefixes of the transfer ids this service sends to the bank: payments and refunds.
PAYMENT_PREFIX = "txn_"
REFUND_PREFIX = "rfd_"


def card_account(card_id: str) -> str:
    return f"card:{card_id}"


def merchant_account(merchant_id: str) -> str:
    return f"merchant:{merchant_id}"


async def _book_debit(
    conn: Conn, bill_id: str, merchant_id: str, card_id: str, bank_transfer_id: str, amount: int, at: datetime
) -> None:
    """The bank's debit of the card, into clearing: the first half of a payment, and of a reversed one."""
    await store.book(
        conn,
        new_id("ltr"),
        "debit",
        bill_id,
        merchant_id,
        amount,
        at,
        [(card_account(card_id), -amount), (CLEARING, amount)],
        bank_transfer_id=bank_transfer_id,
    )


async def book_payment(
    conn: Conn, bill_id: str, merchant_id: str, card_id: str, bank_transfer_id: str, amount: int, at: datetime
) -> None:
    """The bank debited the card into clearing, and clearing settles to what the merchant is owed."""
    await _book_debit(conn, bill_id, merchant_id, card_id, bank_transfer_id, amount, at)
    await store.book(
        conn,
        new_id("ltr"),
        "settle",
        bill_id,
        merchant_id,
        amount,
        at,
        [(CLEARING, -amount), (merchant_account(merchant_id), amount)],
    )


async def book_reversal(
    conn: Conn, bill_id: str, merchant_id: str, card_id: str, bank_transfer_id: str, amount: int, at: datetime
) -> None:
    """A debit no bill could take: it reached clearing, and the bank's reversal gave it back to the card."""
    await _book_debit(conn, bill_id, merchant_id, card_id, bank_transfer_id, amount, at)
    await store.book(
        conn,
        new_id("ltr"),
        "reverse",
        bill_id,
        merchant_id,
        amount,
        at,
        [(CLEARING, -amount), (card_account(card_id), amount)],
        bank_transfer_id=bank_transfer_id,
    )


async def book_refund(conn: Conn, bill_id: str, merchant_id: str, refund_id: str, amount: int, at: datetime) -> None:
    """The merchant's payable gives the refund up; it waits in `refunds` until the bank has credited the card."""
    await store.book(
        conn,
        new_id("ltr"),
        "refund",
        bill_id,
        merchant_id,
        amount,
        at,
        [(merchant_account(merchant_id), -amount), (REFUNDS, amount)],
        refund_id=refund_id,
    )


async def book_refund_credit(
    conn: Conn, bill_id: str, merchant_id: str, card_id: str, refund_id: str, amount: int, at: datetime
) -> None:
    await store.book(
        conn,
        new_id("ltr"),
        "credit",
        bill_id,
        merchant_id,
        amount,
        at,
        [(REFUNDS, -amount), (card_account(card_id), amount)],
        refund_id=refund_id,
        bank_transfer_id=refund_id,
    )


async def book_batch(
    conn: Conn, kind: str, batch_id: str, merchant_id: str, amount: int, at: datetime, entries: list[tuple[str, int]]
) -> None:
    """A disbursement batch's movement (reserve, disburse, release) in the same ledger as bills' (issue 12)."""
    await store.book(conn, new_id("ltr"), kind, None, merchant_id, amount, at, entries, batch_id=batch_id)


async def check(pool: asyncpg.Pool) -> list[str]:
    """What is wrong with the ledger, one line each; empty when Σ = 0 overall and per transfer and every bill agrees."""
    problems = []
    total = await store.ledger_total(pool)
    if total != 0:
        problems.append(f"ledger entries sum to {total} fen, not 0")
    problems.extend(
        f"transfer {row.transfer_id} sums to {row.total} fen over {row.legs} entries"
        for row in await store.unbalanced_transfers(pool)
    )
    problems.extend(
        f"bill {row.bill_id} ({row.status}, {row.amount_fen} fen, refunded {row.refunded_fen}):"
        f" ledger settled {row.settled}, debited {row.debited}, reversed {row.reversed},"
        f" refunded {row.refunded}, credited {row.credited} (refunds done {row.refunds_succeeded})"
        for row in await store.bill_mismatches(pool)
    )
    return problems


@dataclass
class Reconciliation:
    """The day's bank transfers against the ledger's mirrors of them."""

    day: str
    bank_transfers: int = 0
    ledger_movements: int = 0
    differences: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "date": self.day,
            "bank_transfers": self.bank_transfers,
            "ledger_movements": self.ledger_movements,
            "differences": self.differences,
            "clean": not self.differences,
        }


def _ours(transfer_id: str) -> bool:
    return transfer_id.startswith((PAYMENT_PREFIX, REFUND_PREFIX))


def _expected(movements: list[BankMovement]) -> tuple[str, str, int, str]:
    """What the bank should hold for one transfer id, given the ledger's movements under it."""
    kinds = {m.kind for m in movements}
    first = movements[0]
    card = first.account.removeprefix("card:")
    if kinds == {"debit", "reverse"}:
        return card, "debit", first.amount_fen, "reversed"
    if kinds == {"credit"}:
        return card, "credit", first.amount_fen, "completed"
    return card, "debit", first.amount_fen, "completed"


def _compare(transfer: BankTransfer, movements: list[BankMovement]) -> dict[str, Any] | None:
    if not movements:
        if transfer.status == "voided":
            return None
        return {"transfer_id": transfer.transfer_id, "problem": "at the bank, not in the ledger"}
    card, direction, amount, status = _expected(movements)
    found = (transfer.card_id, transfer.direction, transfer.amount_fen, transfer.status)
    if found != (card, direction, amount, status):
        return {
            "transfer_id": transfer.transfer_id,
            "problem": "differs",
            "bank": {"card_id": found[0], "direction": found[1], "amount_fen": found[2], "status": found[3]},
            "ledger": {"card_id": card, "direction": direction, "amount_fen": amount, "status": status},
        }
    return None


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(0), tzinfo=UTC)
    return start, start + timedelta(days=1)


async def reconcile(pool: asyncpg.Pool, bank: BankAdapter, day: date) -> Reconciliation:
    """Every transfer of ours the bank made on `day` must be in the ledger as it is at the bank, and every bank
    movement the ledger booked on `day` must be at the bank."""
    start, end = day_bounds(day)
    at_bank = [t for t in await bank.transfers_on(day) if _ours(t.transfer_id)]
    booked_today = await store.bank_movements_between(pool, start, end)
    ids = sorted({t.transfer_id for t in at_bank} | {m.bank_transfer_id for m in booked_today})
    by_id: dict[str, list[BankMovement]] = {}
    for movement in await store.bank_movements(pool, ids):
        by_id.setdefault(movement.bank_transfer_id, []).append(movement)
    result = Reconciliation(day=day.isoformat(), bank_transfers=len(at_bank), ledger_movements=len(booked_today))
    seen = set()
    for transfer in at_bank:
        seen.add(transfer.transfer_id)
        difference = _compare(transfer, by_id.get(transfer.transfer_id, []))
        if difference is not None:
            result.differences.append(difference)
    for transfer_id in ids:
        if transfer_id in seen:
            continue
        # booked today, made at the bank another day (a payment recovered after midnight), or not at all
        elsewhere = await bank.transfer(transfer_id)
        if elsewhere is None or elsewhere.status == "voided":
            result.differences.append({"transfer_id": transfer_id, "problem": "in the ledger, not at the bank"})
            continue
        difference = _compare(elsewhere, by_id.get(transfer_id, []))
        if difference is not None:
            result.differences.append(difference)
    return result
