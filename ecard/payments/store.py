"""SQL for bills, payment attempts, PIN guards, refunds, the ledger and the callback outbox: this room's tables."""

from __future__ import annotations

from datetime import datetime
from typing import TypeVar

import asyncpg
import msgspec

from ecard.kit.infra import Conn, Executor
from ecard.payments.models import (
    Attempt,
    BankMovement,
    Bill,
    BillMismatch,
    DeliveryRow,
    LeasedEvent,
    PaidBill,
    Refund,
    RefundLine,
    UnbalancedTransfer,
)

R = TypeVar("R", bound=msgspec.Struct)


def _one(kind: type[R], row: asyncpg.Record | None) -> R | None:
    return kind(**row) if row is not None else None


def _all(kind: type[R], rows: list[asyncpg.Record]) -> list[R]:
    return [kind(**row) for row in rows]


# A bill with its unsettled attempt, if any: the partial unique index allows one claimed attempt per bill.
_BILL = (
    "SELECT b.bill_id, b.merchant_id, b.out_bill_no, b.body_hash, b.item_code, b.amount_fen, b.description,"
    " b.notify_url, b.status, b.created_at, b.expires_at, b.paid_at, b.closed_at, b.card_id, b.transaction_id,"
    " b.refunded_fen, a.transfer_id IS NOT NULL AS paying, a.leased_until AS paying_until FROM bills b"
    " LEFT JOIN payment_attempts a ON a.bill_id = b.bill_id AND a.state = 'claimed'"
)


async def insert_bill(
    conn: Executor,
    bill_id: str,
    merchant_id: str,
    out_bill_no: str,
    body_hash: bytes,
    item_code: str,
    amount_fen: int,
    description: str,
    notify_url: str,
    created_at: datetime,
    expires_at: datetime,
) -> bool:
    """False when the merchant already has a bill with this number (the unique constraint decides races)."""
    done: str = await conn.execute(
        "INSERT INTO bills (bill_id, merchant_id, out_bill_no, body_hash, item_code, amount_fen, description,"
        " notify_url, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        " ON CONFLICT (merchant_id, out_bill_no) DO NOTHING",
        bill_id,
        merchant_id,
        out_bill_no,
        body_hash,
        item_code,
        amount_fen,
        description,
        notify_url,
        created_at,
        expires_at,
    )
    return done.endswith(" 1")


async def bill(conn: Executor, bill_id: str) -> Bill | None:
    return _one(Bill, await conn.fetchrow(_BILL + " WHERE b.bill_id = $1", bill_id))


async def bill_by_out_no(conn: Executor, merchant_id: str, out_bill_no: str) -> Bill | None:
    row = await conn.fetchrow(_BILL + " WHERE b.merchant_id = $1 AND b.out_bill_no = $2", merchant_id, out_bill_no)
    return _one(Bill, row)


async def bill_for_update(conn: Conn, bill_id: str) -> Bill | None:
    """The bill, locked until the transaction ends: pays, closes and refunds of one bill take turns.

    Read again after the lock is granted, so that it shows an attempt committed while this one waited."""
    if await conn.fetchval("SELECT 1 FROM bills WHERE bill_id = $1 FOR UPDATE", bill_id) is None:
        return None
    return await bill(conn, bill_id)


async def close_bill(conn: Conn, bill_id: str, at: datetime) -> None:
    await conn.execute("UPDATE bills SET status = 'closed', closed_at = $2 WHERE bill_id = $1", bill_id, at)


async def mark_paid(conn: Conn, bill_id: str, card_id: str, transaction_id: str, at: datetime) -> None:
    await conn.execute(
        "UPDATE bills SET status = 'paid', paid_at = $2, card_id = $3, transaction_id = $4 WHERE bill_id = $1",
        bill_id,
        at,
        card_id,
        transaction_id,
    )


async def add_refunded(conn: Conn, bill_id: str, amount_fen: int) -> None:
    await conn.execute(
        "UPDATE bills SET refunded_fen = refunded_fen + $2,"
        " status = CASE WHEN refunded_fen + $2 = amount_fen THEN 'refunded' ELSE status END WHERE bill_id = $1",
        bill_id,
        amount_fen,
    )


_ATTEMPT = (
    "SELECT transfer_id, bill_id, card_id, amount_fen, state, created_at, leased_until, lease_token"
    " FROM payment_attempts"
)


async def live_attempt(conn: Executor, bill_id: str) -> Attempt | None:
    """The bill's attempt in flight (`claimed`) or done (`succeeded`), if any."""
    row = await conn.fetchrow(_ATTEMPT + " WHERE bill_id = $1 AND state IN ('claimed', 'succeeded')", bill_id)
    return _one(Attempt, row)


async def claim_attempt(
    conn: Conn,
    transfer_id: str,
    bill_id: str,
    card_id: str,
    device_id: str,
    amount_fen: int,
    at: datetime,
    lease_token: str,
    leased_until: datetime,
) -> bool:
    """False when another attempt on the bill is in flight or done (the partial unique index decides races)."""
    done: str = await conn.execute(
        "INSERT INTO payment_attempts (transfer_id, bill_id, card_id, device_id, amount_fen, state, created_at,"
        " updated_at, lease_token, leased_until) VALUES ($1, $2, $3, $4, $5, 'claimed', $6, $6, $7, $8)"
        " ON CONFLICT (bill_id) WHERE state IN ('claimed', 'succeeded') DO NOTHING",
        transfer_id,
        bill_id,
        card_id,
        device_id,
        amount_fen,
        at,
        lease_token,
        leased_until,
    )
    return done.endswith(" 1")


async def renew_attempt(conn: Executor, transfer_id: str, lease_token: str, leased_until: datetime) -> bool:
    """Extend the holder's lease of a claimed attempt; False when it is settled or someone else holds it now."""
    done: str = await conn.execute(
        "UPDATE payment_attempts SET leased_until = $3"
        " WHERE transfer_id = $1 AND state = 'claimed' AND lease_token = $2",
        transfer_id,
        lease_token,
        leased_until,
    )
    return done.endswith(" 1")


async def extend_attempt(conn: Executor, transfer_id: str, leased_until: datetime) -> None:
    """Leave a claimed attempt alone until `leased_until`, whoever holds it (its bank answer needs a person)."""
    await conn.execute(
        "UPDATE payment_attempts SET leased_until = $2 WHERE transfer_id = $1 AND state = 'claimed'",
        transfer_id,
        leased_until,
    )


async def end_attempt(conn: Executor, transfer_id: str, lease_token: str, state: str, at: datetime) -> bool:
    """Move a claimed attempt to its outcome; False when its holder is someone else now, or it is settled."""
    done: str = await conn.execute(
        "UPDATE payment_attempts SET state = $3, updated_at = $4, leased_until = NULL"
        " WHERE transfer_id = $1 AND state = 'claimed' AND lease_token = $2",
        transfer_id,
        lease_token,
        state,
        at,
    )
    return done.endswith(" 1")


async def attempt_for_update(conn: Conn, transfer_id: str) -> Attempt | None:
    return _one(Attempt, await conn.fetchrow(_ATTEMPT + " WHERE transfer_id = $1 FOR UPDATE", transfer_id))


async def lease_stuck_attempt(
    conn: Executor, now: datetime, lease_token: str, leased_until: datetime
) -> Attempt | None:
    """The oldest claimed attempt whose holder's lease has run out, leased to `lease_token` (committed at once, so
    that the bank is asked with no transaction open); None when there is none."""
    row = await conn.fetchrow(
        "UPDATE payment_attempts SET lease_token = $2, leased_until = $3 WHERE transfer_id = ("
        " SELECT transfer_id FROM payment_attempts WHERE state = 'claimed'"
        " AND (leased_until IS NULL OR leased_until <= $1) ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED)"
        " RETURNING transfer_id, bill_id, card_id, amount_fen, state, created_at, leased_until, lease_token",
        now,
        lease_token,
        leased_until,
    )
    return _one(Attempt, row)


async def insert_refund(
    conn: Conn,
    refund: Refund,
) -> None:
    await conn.execute(
        "INSERT INTO refunds (refund_id, bill_id, merchant_id, out_refund_no, body_hash, amount_fen, reason, card_id,"
        " state, created_at, leased_until, lease_token) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        refund.refund_id,
        refund.bill_id,
        refund.merchant_id,
        refund.out_refund_no,
        refund.body_hash,
        refund.amount_fen,
        refund.reason,
        refund.card_id,
        refund.state,
        refund.created_at,
        refund.leased_until,
        refund.lease_token,
    )


_REFUND = (
    "SELECT refund_id, bill_id, merchant_id, out_refund_no, body_hash, amount_fen, reason, card_id, state,"
    " created_at, refunded_at, leased_until, lease_token FROM refunds"
)


async def refund(conn: Executor, refund_id: str) -> Refund | None:
    return _one(Refund, await conn.fetchrow(_REFUND + " WHERE refund_id = $1", refund_id))


async def refund_by_out_no(conn: Executor, merchant_id: str, out_refund_no: str) -> Refund | None:
    row = await conn.fetchrow(_REFUND + " WHERE merchant_id = $1 AND out_refund_no = $2", merchant_id, out_refund_no)
    return _one(Refund, row)


async def refund_for_update(conn: Conn, refund_id: str) -> Refund | None:
    return _one(Refund, await conn.fetchrow(_REFUND + " WHERE refund_id = $1 FOR UPDATE", refund_id))


async def lease_stuck_refund(conn: Executor, now: datetime, lease_token: str, leased_until: datetime) -> Refund | None:
    """The oldest refund still waiting for the bank's credit whose holder's lease has run out, leased to
    `lease_token` (committed at once); None when there is none."""
    row = await conn.fetchrow(
        "UPDATE refunds SET lease_token = $2, leased_until = $3 WHERE refund_id = ("
        " SELECT refund_id FROM refunds WHERE state = 'processing'"
        " AND (leased_until IS NULL OR leased_until <= $1) ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED)"
        " RETURNING refund_id, bill_id, merchant_id, out_refund_no, body_hash, amount_fen, reason, card_id, state,"
        " created_at, refunded_at, leased_until, lease_token",
        now,
        lease_token,
        leased_until,
    )
    return _one(Refund, row)


async def extend_refund(conn: Executor, refund_id: str, leased_until: datetime) -> None:
    await conn.execute(
        "UPDATE refunds SET leased_until = $2 WHERE refund_id = $1 AND state = 'processing'", refund_id, leased_until
    )


async def refund_succeeded(conn: Conn, refund_id: str, at: datetime) -> bool:
    """The bank credited the card; False when the refund was booked as done already (by another worker)."""
    done: str = await conn.execute(
        "UPDATE refunds SET state = 'succeeded', refunded_at = $2, leased_until = NULL"
        " WHERE refund_id = $1 AND state = 'processing'",
        refund_id,
        at,
    )
    return done.endswith(" 1")


async def book(
    conn: Conn,
    transfer_id: str,
    kind: str,
    bill_id: str | None,
    merchant_id: str,
    amount_fen: int,
    at: datetime,
    entries: list[tuple[str, int]],
    *,
    refund_id: str | None = None,
    bank_transfer_id: str | None = None,
    batch_id: str | None = None,
) -> None:
    """One ledger transfer and its entries; the database refuses the commit unless they sum to zero."""
    await conn.execute(
        "INSERT INTO ledger_transfers (transfer_id, kind, bill_id, merchant_id, refund_id, bank_transfer_id,"
        " amount_fen, booked_at, batch_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        transfer_id,
        kind,
        bill_id,
        merchant_id,
        refund_id,
        bank_transfer_id,
        amount_fen,
        at,
        batch_id,
    )
    await conn.executemany(
        "INSERT INTO ledger_entries (transfer_id, account, amount_fen) VALUES ($1, $2, $3)",
        [(transfer_id, account, amount) for account, amount in entries],
    )


async def insert_event(
    conn: Conn,
    event_id: str,
    bill_id: str | None,
    merchant_id: str,
    event: str,
    notify_url: str,
    body: bytes,
    at: datetime,
    batch_id: str | None = None,
) -> None:
    await conn.execute(
        "INSERT INTO outbox_events (event_id, bill_id, merchant_id, event, notify_url, body, created_at,"
        " next_attempt_at, batch_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8)",
        event_id,
        bill_id,
        merchant_id,
        event,
        notify_url,
        body,
        at,
        batch_id,
    )


# Per merchant with due events, its oldest ones up to what it has left of `per_merchant` deliveries in flight
# (counted over every worker, by their leases); of those, the `total` most overdue. Leased in the same statement.
_LEASE_DUE = """
WITH busy AS (
    SELECT merchant_id, count(*) AS n FROM outbox_events
    WHERE delivered_at IS NULL AND gave_up_at IS NULL AND leased_until > $1
    GROUP BY merchant_id
),
waiting AS (
    SELECT DISTINCT merchant_id FROM outbox_events
    WHERE delivered_at IS NULL AND gave_up_at IS NULL AND next_attempt_at <= $1
      AND (leased_until IS NULL OR leased_until <= $1)
),
picked AS (
    SELECT due.event_id FROM waiting w LEFT JOIN busy b USING (merchant_id)
    CROSS JOIN LATERAL (
        SELECT o.event_id, o.next_attempt_at FROM outbox_events o
        WHERE o.merchant_id = w.merchant_id AND o.delivered_at IS NULL AND o.gave_up_at IS NULL
          AND o.next_attempt_at <= $1 AND (o.leased_until IS NULL OR o.leased_until <= $1)
        ORDER BY o.next_attempt_at LIMIT GREATEST($4 - COALESCE(b.n, 0), 0)
        FOR UPDATE SKIP LOCKED
    ) due
    ORDER BY due.next_attempt_at LIMIT $5
)
UPDATE outbox_events e SET leased_until = $2, lease_token = $3 FROM picked WHERE e.event_id = picked.event_id
RETURNING e.event_id, e.merchant_id, e.notify_url, e.body, e.attempts, e.created_at, e.lease_token
"""


async def lease_due_events(
    conn: Executor, now: datetime, leased_until: datetime, lease_token: str, per_merchant: int, total: int
) -> list[LeasedEvent]:
    """Due events leased to `lease_token` until `leased_until`, at most `per_merchant` of one merchant in flight
    and `total` in all; committed before anything is posted, so that no transaction is open meanwhile."""
    rows = await conn.fetch(_LEASE_DUE, now, leased_until, lease_token, per_merchant, total)
    return _all(LeasedEvent, rows)


async def record_delivery(
    conn: Conn,
    event: LeasedEvent,
    at: datetime,
    http_status: int | None,
    error: str | None,
    *,
    delivered: bool,
    next_attempt_at: datetime | None,
) -> bool:
    """One delivery attempt; then the event is delivered, due again at `next_attempt_at`, or given up (None), and
    its lease ends. The attempt is listed in any case; the event changes only while `event`'s lease holds it
    (False otherwise)."""
    await conn.execute(
        "INSERT INTO notification_attempts (event_id, attempted_at, http_status, error) VALUES ($1, $2, $3, $4)",
        event.event_id,
        at,
        http_status,
        error,
    )
    done: str = await conn.execute(
        "UPDATE outbox_events SET attempts = attempts + 1, leased_until = NULL, lease_token = NULL,"
        " delivered_at = CASE WHEN $4::boolean THEN $3::timestamptz END,"
        " gave_up_at = CASE WHEN NOT $4::boolean AND $5::timestamptz IS NULL THEN $3::timestamptz END,"
        " next_attempt_at = COALESCE($5, next_attempt_at) WHERE event_id = $1 AND lease_token = $2",
        event.event_id,
        event.lease_token,
        at,
        delivered,
        next_attempt_at,
    )
    return done.endswith(" 1")


async def notification_attempts(conn: Executor, bill_id: str) -> list[DeliveryRow]:
    rows = await conn.fetch(
        "SELECT e.event_id, e.event, a.attempted_at, a.http_status, a.error FROM notification_attempts a"
        " JOIN outbox_events e USING (event_id) WHERE e.bill_id = $1 ORDER BY a.attempt_id",
        bill_id,
    )
    return _all(DeliveryRow, rows)


async def paid_bills_between(conn: Executor, merchant_id: str, start: datetime, end: datetime) -> list[PaidBill]:
    rows = await conn.fetch(
        "SELECT bill_id, out_bill_no, item_code, amount_fen, paid_at, transaction_id FROM bills"
        " WHERE merchant_id = $1 AND paid_at >= $2 AND paid_at < $3 ORDER BY paid_at, bill_id",
        merchant_id,
        start,
        end,
    )
    return _all(PaidBill, rows)


async def refunds_between(conn: Executor, merchant_id: str, start: datetime, end: datetime) -> list[RefundLine]:
    rows = await conn.fetch(
        "SELECT refund_id, out_refund_no, bill_id, amount_fen, state, created_at, refunded_at FROM refunds"
        " WHERE merchant_id = $1 AND created_at >= $2 AND created_at < $3 ORDER BY created_at, refund_id",
        merchant_id,
        start,
        end,
    )
    return _all(RefundLine, rows)


async def merchant_ledger_between(conn: Executor, merchant_id: str, start: datetime, end: datetime) -> dict[str, int]:
    """Fen booked to and from the merchant's payable account in [start, end), by kind of transfer."""
    rows = await conn.fetch(
        "SELECT t.kind, sum(e.amount_fen) AS fen FROM ledger_entries e JOIN ledger_transfers t USING (transfer_id)"
        " WHERE e.account = $1 AND t.booked_at >= $2 AND t.booked_at < $3 GROUP BY t.kind",
        f"merchant:{merchant_id}",
        start,
        end,
    )
    return {r["kind"]: int(r["fen"]) for r in rows}


async def ledger_total(conn: Executor) -> int:
    total = await conn.fetchval("SELECT COALESCE(sum(amount_fen), 0) FROM ledger_entries")
    return int(total)


async def unbalanced_transfers(conn: Executor) -> list[UnbalancedTransfer]:
    rows = await conn.fetch(
        "SELECT t.transfer_id, COALESCE(sum(e.amount_fen), 0) AS total, count(e.entry_id) AS legs"
        " FROM ledger_transfers t LEFT JOIN ledger_entries e USING (transfer_id)"
        " GROUP BY t.transfer_id HAVING COALESCE(sum(e.amount_fen), 0) <> 0 OR count(e.entry_id) < 2"
        " ORDER BY t.transfer_id LIMIT 100"
    )
    return _all(UnbalancedTransfer, rows)


# Per bill: what its state says against what the ledger holds. A paid or refunded bill has one settle transfer of
# its amount into the merchant's account; any other bill has none. Refunds booked equal the bill's refunded_fen.
# A bill whose bank debit was booked but never settled must have been reversed.
_BILL_MISMATCHES = """
WITH booked AS (
    SELECT bill_id,
           COALESCE(sum(amount_fen) FILTER (WHERE kind = 'settle'), 0) AS settled,
           COALESCE(sum(amount_fen) FILTER (WHERE kind = 'debit'), 0) AS debited,
           COALESCE(sum(amount_fen) FILTER (WHERE kind = 'reverse'), 0) AS reversed,
           COALESCE(sum(amount_fen) FILTER (WHERE kind = 'refund'), 0) AS refunded,
           COALESCE(sum(amount_fen) FILTER (WHERE kind = 'credit'), 0) AS credited
    FROM ledger_transfers GROUP BY bill_id
),
credited AS (
    SELECT bill_id, COALESCE(sum(amount_fen) FILTER (WHERE state = 'succeeded'), 0) AS succeeded
    FROM refunds GROUP BY bill_id
)
SELECT b.bill_id, b.status, b.amount_fen, b.refunded_fen,
       COALESCE(k.settled, 0) AS settled, COALESCE(k.debited, 0) AS debited, COALESCE(k.reversed, 0) AS reversed,
       COALESCE(k.refunded, 0) AS refunded, COALESCE(k.credited, 0) AS credited,
       COALESCE(c.succeeded, 0) AS refunds_succeeded
FROM bills b LEFT JOIN booked k USING (bill_id) LEFT JOIN credited c USING (bill_id)
WHERE COALESCE(k.settled, 0) <> CASE WHEN b.status IN ('paid', 'refunded') THEN b.amount_fen ELSE 0 END
   OR COALESCE(k.debited, 0) - COALESCE(k.reversed, 0) <> COALESCE(k.settled, 0)
   OR COALESCE(k.refunded, 0) <> b.refunded_fen
   OR COALESCE(k.credited, 0) <> COALESCE(c.succeeded, 0)
ORDER BY b.bill_id LIMIT 100
"""


async def bill_mismatches(conn: Executor) -> list[BillMismatch]:
    return _all(BillMismatch, await conn.fetch(_BILL_MISMATCHES))


async def bank_movements_between(conn: Executor, start: datetime, end: datetime) -> list[BankMovement]:
    """The ledger's mirrors of bank movements booked in [start, end)."""
    rows = await conn.fetch(
        "SELECT t.bank_transfer_id, t.kind, t.amount_fen, t.booked_at, e.account FROM ledger_transfers t"
        " JOIN ledger_entries e ON e.transfer_id = t.transfer_id AND e.account LIKE 'card:%'"
        " WHERE t.bank_transfer_id IS NOT NULL AND t.booked_at >= $1 AND t.booked_at < $2",
        start,
        end,
    )
    return _all(BankMovement, rows)


async def bank_movements(conn: Executor, bank_transfer_ids: list[str]) -> list[BankMovement]:
    rows = await conn.fetch(
        "SELECT t.bank_transfer_id, t.kind, t.amount_fen, t.booked_at, e.account FROM ledger_transfers t"
        " JOIN ledger_entries e ON e.transfer_id = t.transfer_id AND e.account LIKE 'card:%'"
        " WHERE t.bank_transfer_id = ANY($1::text[])",
        bank_transfer_ids,
    )
    return _all(BankMovement, rows)
