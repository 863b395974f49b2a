"""SQL for bills, payment attempts, PIN guards, refunds, the ledger and the callback outbox."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ecard.kit.infra import Conn, Executor

_BILL = (
    "SELECT bill_id, merchant_id, out_bill_no, body_hash, item_code, amount_fen, description, notify_url, status,"
    " created_at, expires_at, paid_at, closed_at, card_id, transaction_id, refunded_fen FROM bills"
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


async def bill(conn: Executor, bill_id: str) -> dict[str, Any] | None:
    row = await conn.fetchrow(_BILL + " WHERE bill_id = $1", bill_id)
    return dict(row) if row else None


async def bill_by_out_no(conn: Executor, merchant_id: str, out_bill_no: str) -> dict[str, Any] | None:
    row = await conn.fetchrow(_BILL + " WHERE merchant_id = $1 AND out_bill_no = $2", merchant_id, out_bill_no)
    return dict(row) if row else None


async def bill_for_update(conn: Conn, bill_id: str) -> dict[str, Any] | None:
    """The bill, locked until the transaction ends: pays, closes and refunds of one bill take turns."""
    row = await conn.fetchrow(_BILL + " WHERE bill_id = $1 FOR UPDATE", bill_id)
    return dict(row) if row else None


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


async def live_attempt(conn: Executor, bill_id: str) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        "SELECT transfer_id, state FROM payment_attempts WHERE bill_id = $1 AND state IN ('claimed', 'succeeded')",
        bill_id,
    )
    return dict(row) if row else None


async def claim_attempt(
    conn: Conn, transfer_id: str, bill_id: str, card_id: str, device_id: str, amount_fen: int, at: datetime
) -> bool:
    """False when another attempt on the bill is in flight or done (the partial unique index decides races)."""
    done: str = await conn.execute(
        "INSERT INTO payment_attempts (transfer_id, bill_id, card_id, device_id, amount_fen, state, created_at,"
        " updated_at) VALUES ($1, $2, $3, $4, $5, 'claimed', $6, $6)"
        " ON CONFLICT (bill_id) WHERE state IN ('claimed', 'succeeded') DO NOTHING",
        transfer_id,
        bill_id,
        card_id,
        device_id,
        amount_fen,
        at,
    )
    return done.endswith(" 1")


async def end_attempt(conn: Executor, transfer_id: str, state: str, at: datetime) -> bool:
    """Move a claimed attempt to its outcome; False when someone (the recovery job) already did."""
    done: str = await conn.execute(
        "UPDATE payment_attempts SET state = $2, updated_at = $3 WHERE transfer_id = $1 AND state = 'claimed'",
        transfer_id,
        state,
        at,
    )
    return done.endswith(" 1")


async def attempt(conn: Executor, transfer_id: str) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        "SELECT transfer_id, bill_id, card_id, device_id, amount_fen, state, created_at, updated_at"
        " FROM payment_attempts WHERE transfer_id = $1",
        transfer_id,
    )
    return dict(row) if row else None


async def attempt_for_update(conn: Conn, transfer_id: str) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        "SELECT transfer_id, bill_id, card_id, amount_fen, state FROM payment_attempts WHERE transfer_id = $1"
        " FOR UPDATE",
        transfer_id,
    )
    return dict(row) if row else None


async def stuck_attempt(conn: Conn, claimed_before: datetime) -> dict[str, Any] | None:
    """One attempt claimed before `claimed_before` and still unresolved, locked; others' locked ones are skipped."""
    row = await conn.fetchrow(
        "SELECT transfer_id, bill_id, card_id, amount_fen, state FROM payment_attempts"
        " WHERE state = 'claimed' AND created_at < $1 ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED",
        claimed_before,
    )
    return dict(row) if row else None


async def insert_refund(
    conn: Conn,
    refund_id: str,
    bill_id: str,
    merchant_id: str,
    out_refund_no: str,
    body_hash: bytes,
    amount_fen: int,
    reason: str,
    card_id: str,
    at: datetime,
) -> None:
    await conn.execute(
        "INSERT INTO refunds (refund_id, bill_id, merchant_id, out_refund_no, body_hash, amount_fen, reason, card_id,"
        " state, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'processing', $9)",
        refund_id,
        bill_id,
        merchant_id,
        out_refund_no,
        body_hash,
        amount_fen,
        reason,
        card_id,
        at,
    )


_REFUND = (
    "SELECT refund_id, bill_id, merchant_id, out_refund_no, body_hash, amount_fen, reason, card_id, state,"
    " created_at, refunded_at FROM refunds"
)


async def refund_by_out_no(conn: Executor, merchant_id: str, out_refund_no: str) -> dict[str, Any] | None:
    row = await conn.fetchrow(_REFUND + " WHERE merchant_id = $1 AND out_refund_no = $2", merchant_id, out_refund_no)
    return dict(row) if row else None


async def refund_for_update(conn: Conn, refund_id: str) -> dict[str, Any] | None:
    row = await conn.fetchrow(_REFUND + " WHERE refund_id = $1 FOR UPDATE", refund_id)
    return dict(row) if row else None


async def stuck_refund(conn: Conn, created_before: datetime) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        _REFUND + " WHERE state = 'processing' AND created_at < $1 ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED",
        created_before,
    )
    return dict(row) if row else None


async def refund_succeeded(conn: Conn, refund_id: str, at: datetime) -> None:
    await conn.execute(
        "UPDATE refunds SET state = 'succeeded', refunded_at = $2 WHERE refund_id = $1 AND state = 'processing'",
        refund_id,
        at,
    )


async def book(
    conn: Conn,
    transfer_id: str,
    kind: str,
    bill_id: str,
    merchant_id: str,
    amount_fen: int,
    at: datetime,
    entries: list[tuple[str, int]],
    *,
    refund_id: str | None = None,
    bank_transfer_id: str | None = None,
) -> None:
    """One ledger transfer and its entries; the database refuses the commit unless they sum to zero."""
    await conn.execute(
        "INSERT INTO ledger_transfers (transfer_id, kind, bill_id, merchant_id, refund_id, bank_transfer_id,"
        " amount_fen, booked_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        transfer_id,
        kind,
        bill_id,
        merchant_id,
        refund_id,
        bank_transfer_id,
        amount_fen,
        at,
    )
    await conn.executemany(
        "INSERT INTO ledger_entries (transfer_id, account, amount_fen) VALUES ($1, $2, $3)",
        [(transfer_id, account, amount) for account, amount in entries],
    )


async def insert_event(
    conn: Conn,
    event_id: str,
    bill_id: str,
    merchant_id: str,
    event: str,
    notify_url: str,
    body: bytes,
    at: datetime,
) -> None:
    await conn.execute(
        "INSERT INTO outbox_events (event_id, bill_id, merchant_id, event, notify_url, body, created_at,"
        " next_attempt_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
        event_id,
        bill_id,
        merchant_id,
        event,
        notify_url,
        body,
        at,
    )


async def due_events(conn: Conn, now: datetime, limit: int) -> list[dict[str, Any]]:
    """Due events, locked until the transaction ends; rows another worker is delivering are skipped."""
    rows = await conn.fetch(
        "SELECT event_id, notify_url, body, attempts, created_at FROM outbox_events"
        " WHERE delivered_at IS NULL AND gave_up_at IS NULL AND next_attempt_at <= $1"
        " ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED",
        now,
        limit,
    )
    return [dict(r) for r in rows]


async def record_delivery(
    conn: Conn,
    event_id: str,
    at: datetime,
    http_status: int | None,
    error: str | None,
    *,
    delivered: bool,
    next_attempt_at: datetime | None,
) -> None:
    """One delivery attempt; then the event is delivered, due again at `next_attempt_at`, or given up (None)."""
    await conn.execute(
        "INSERT INTO notification_attempts (event_id, attempted_at, http_status, error) VALUES ($1, $2, $3, $4)",
        event_id,
        at,
        http_status,
        error,
    )
    await conn.execute(
        "UPDATE outbox_events SET attempts = attempts + 1,"
        " delivered_at = CASE WHEN $3::boolean THEN $2::timestamptz END,"
        " gave_up_at = CASE WHEN NOT $3::boolean AND $4::timestamptz IS NULL THEN $2::timestamptz END,"
        " next_attempt_at = COALESCE($4, next_attempt_at) WHERE event_id = $1",
        event_id,
        at,
        delivered,
        next_attempt_at,
    )


async def notification_attempts(conn: Executor, bill_id: str) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT e.event_id, e.event, a.attempted_at, a.http_status, a.error FROM notification_attempts a"
        " JOIN outbox_events e USING (event_id) WHERE e.bill_id = $1 ORDER BY a.attempt_id",
        bill_id,
    )
    return [dict(r) for r in rows]


async def paid_bills_between(conn: Executor, merchant_id: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT bill_id, out_bill_no, item_code, amount_fen, paid_at, transaction_id FROM bills"
        " WHERE merchant_id = $1 AND paid_at >= $2 AND paid_at < $3 ORDER BY paid_at, bill_id",
        merchant_id,
        start,
        end,
    )
    return [dict(r) for r in rows]


async def refunds_between(conn: Executor, merchant_id: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT refund_id, out_refund_no, bill_id, amount_fen, state, created_at, refunded_at FROM refunds"
        " WHERE merchant_id = $1 AND created_at >= $2 AND created_at < $3 ORDER BY created_at, refund_id",
        merchant_id,
        start,
        end,
    )
    return [dict(r) for r in rows]


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


async def unbalanced_transfers(conn: Executor) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT t.transfer_id, COALESCE(sum(e.amount_fen), 0) AS total, count(e.entry_id) AS legs"
        " FROM ledger_transfers t LEFT JOIN ledger_entries e USING (transfer_id)"
        " GROUP BY t.transfer_id HAVING COALESCE(sum(e.amount_fen), 0) <> 0 OR count(e.entry_id) < 2"
        " ORDER BY t.transfer_id LIMIT 100"
    )
    return [dict(r) for r in rows]


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


async def bill_mismatches(conn: Executor) -> list[dict[str, Any]]:
    return [dict(r) for r in await conn.fetch(_BILL_MISMATCHES)]


async def bank_movements_between(conn: Executor, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """The ledger's mirrors of bank movements booked in [start, end)."""
    rows = await conn.fetch(
        "SELECT t.bank_transfer_id, t.kind, t.amount_fen, t.booked_at, e.account FROM ledger_transfers t"
        " JOIN ledger_entries e ON e.transfer_id = t.transfer_id AND e.account LIKE 'card:%'"
        " WHERE t.bank_transfer_id IS NOT NULL AND t.booked_at >= $1 AND t.booked_at < $2",
        start,
        end,
    )
    return [dict(r) for r in rows]


async def bank_movements(conn: Executor, bank_transfer_ids: list[str]) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT t.bank_transfer_id, t.kind, t.amount_fen, t.booked_at, e.account FROM ledger_transfers t"
        " JOIN ledger_entries e ON e.transfer_id = t.transfer_id AND e.account LIKE 'card:%'"
        " WHERE t.bank_transfer_id = ANY($1::text[])",
        bank_transfer_ids,
    )
    return [dict(r) for r in rows]
