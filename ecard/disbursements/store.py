"""SQL for disbursement batches, their rows, approvals, the payer's leases and the holder's view."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeVar

import msgspec

from ecard.disbursements.models import (
    Batch,
    BatchProblem,
    ItemReach,
    PaidRow,
    ReadyRow,
    RowRecord,
    StatusCount,
)
from ecard.kit.infra import Conn, Executor

T = TypeVar("T")

_BATCH = (
    "batch_id, merchant_id, out_batch_no, body_hash, item_code, description, notify_url, status, rows_total,"
    " amount_total_fen, paid_fen, approvals_needed, first_approver, second_approver, failure_code, reservation_id,"
    " created_at, expires_at, approved_at, completed_at, lease_token"
)
ROW_COLUMNS = (
    "batch_id",
    "row_no",
    "out_row_no",
    "person_index",
    "card_id",
    "amount_fen",
    "memo",
    "status",
    "code",
)


def _all(kind: type[T], rows: Sequence[Any]) -> list[T]:
    return [msgspec.convert(dict(r), kind) for r in rows]


def _one(kind: type[T], row: Any) -> T | None:
    return None if row is None else msgspec.convert(dict(row), kind)


async def insert_batch(
    conn: Conn,
    batch_id: str,
    merchant_id: str,
    out_batch_no: str,
    item_code: str,
    description: str,
    notify_url: str,
    at: datetime,
    expires_at: datetime,
) -> bool:
    """A new batch in `validating`; False when the merchant has one under this number (a racing insert waits for the
    other transaction, and sees its batch once that commits)."""
    made = await conn.fetchval(
        "INSERT INTO disbursement_batches (batch_id, merchant_id, out_batch_no, body_hash, item_code, description,"
        " notify_url, status, created_at, expires_at) VALUES ($1, $2, $3, '', $4, $5, $6, 'validating', $7, $8)"
        " ON CONFLICT (merchant_id, out_batch_no) DO NOTHING RETURNING batch_id",
        batch_id,
        merchant_id,
        out_batch_no,
        item_code,
        description,
        notify_url,
        at,
        expires_at,
    )
    return made is not None


async def insert_rows(conn: Conn, records: list[tuple[Any, ...]]) -> None:
    await conn.copy_records_to_table("disbursement_rows", records=records, columns=ROW_COLUMNS)


async def validated(
    conn: Conn,
    batch_id: str,
    body_hash: bytes,
    rows_total: int,
    amount_total_fen: int,
    approvals_needed: int,
) -> None:
    await conn.execute(
        "UPDATE disbursement_batches SET body_hash = $2, rows_total = $3, amount_total_fen = $4,"
        " approvals_needed = $5, status = 'awaiting_approval' WHERE batch_id = $1",
        batch_id,
        body_hash,
        rows_total,
        amount_total_fen,
        approvals_needed,
    )


async def batch(conn: Executor, batch_id: str) -> Batch | None:
    row = await conn.fetchrow(f"SELECT {_BATCH} FROM disbursement_batches WHERE batch_id = $1", batch_id)  # noqa: S608
    return _one(Batch, row)


async def recent_batches(conn: Executor, status: str | None, limit: int) -> list[Batch]:
    rows = await conn.fetch(
        f"SELECT {_BATCH} FROM disbursement_batches WHERE $1::text IS NULL OR status = $1"  # noqa: S608
        " ORDER BY created_at DESC, batch_id DESC LIMIT $2",
        status,
        limit,
    )
    return _all(Batch, rows)


async def batch_by_out_no(conn: Executor, merchant_id: str, out_batch_no: str) -> Batch | None:
    row = await conn.fetchrow(
        f"SELECT {_BATCH} FROM disbursement_batches WHERE merchant_id = $1 AND out_batch_no = $2",  # noqa: S608
        merchant_id,
        out_batch_no,
    )
    return _one(Batch, row)


async def batch_for_update(conn: Conn, batch_id: str) -> Batch | None:
    row = await conn.fetchrow(
        f"SELECT {_BATCH} FROM disbursement_batches WHERE batch_id = $1 FOR UPDATE",  # noqa: S608
        batch_id,
    )
    return _one(Batch, row)


async def counts(conn: Executor, batch_id: str) -> list[StatusCount]:
    rows = await conn.fetch(
        "SELECT status, count(*)::int AS n FROM disbursement_rows WHERE batch_id = $1 GROUP BY status", batch_id
    )
    return _all(StatusCount, rows)


async def rows_page(conn: Executor, batch_id: str, status: str | None, after: int, limit: int) -> list[RowRecord]:
    rows = await conn.fetch(
        "SELECT row_no, out_row_no, status, code, amount_fen, paid_at FROM disbursement_rows"
        " WHERE batch_id = $1 AND ($2::text IS NULL OR status = $2) AND row_no > $3 ORDER BY row_no LIMIT $4",
        batch_id,
        status,
        after,
        limit,
    )
    return _all(RowRecord, rows)


async def set_approver(conn: Conn, batch_id: str, first: str | None, second: str | None) -> None:
    await conn.execute(
        "UPDATE disbursement_batches SET first_approver = $2, second_approver = $3 WHERE batch_id = $1",
        batch_id,
        first,
        second,
    )


async def set_approved(conn: Conn, batch_id: str, at: datetime) -> None:
    await conn.execute(
        "UPDATE disbursement_batches SET status = 'approved', approved_at = $2 WHERE batch_id = $1", batch_id, at
    )


async def set_decided(conn: Conn, batch_id: str, status: str, reason: str, at: datetime) -> None:
    """The batch ends without moving money: rejected or expired."""
    await conn.execute(
        "UPDATE disbursement_batches SET status = $2, decided_reason = $3, completed_at = $4 WHERE batch_id = $1",
        batch_id,
        status,
        reason,
        at,
    )


async def overdue(conn: Executor, now: datetime, limit: int) -> list[str]:
    """Batches still awaiting approval past their time."""
    rows = await conn.fetch(
        "SELECT batch_id FROM disbursement_batches WHERE status = 'awaiting_approval' AND expires_at <= $1"
        " ORDER BY expires_at LIMIT $2",
        now,
        limit,
    )
    return [r["batch_id"] for r in rows]


async def lease_work(conn: Executor, now: datetime, until: datetime, token: str) -> Batch | None:
    """One approved or paying batch nobody holds, leased to `token` (committed before the bank is called)."""
    row = await conn.fetchrow(
        "UPDATE disbursement_batches SET leased_until = $2, lease_token = $3 WHERE batch_id = ("  # noqa: S608
        " SELECT batch_id FROM disbursement_batches WHERE status IN ('approved', 'paying')"
        " AND (leased_until IS NULL OR leased_until <= $1) ORDER BY approved_at LIMIT 1 FOR UPDATE SKIP LOCKED)"
        f" RETURNING {_BATCH}",
        now,
        until,
        token,
    )
    return _one(Batch, row)


async def held(conn: Conn, batch_id: str, token: str, until: datetime) -> Batch | None:
    """The batch, locked and its lease extended, while `token` still holds it; None once another took it over."""
    row = await conn.fetchrow(
        "UPDATE disbursement_batches SET leased_until = $3 WHERE batch_id = $1 AND lease_token = $2"  # noqa: S608
        f" RETURNING {_BATCH}",
        batch_id,
        token,
        until,
    )
    return _one(Batch, row)


async def let_go(conn: Executor, batch_id: str, token: str, until: datetime) -> None:
    """The holder stops; the batch is due again at `until` (for anyone)."""
    await conn.execute(
        "UPDATE disbursement_batches SET leased_until = $3, lease_token = NULL"
        " WHERE batch_id = $1 AND lease_token = $2",
        batch_id,
        token,
        until,
    )


async def set_paying(conn: Conn, batch_id: str, reservation_id: str) -> None:
    await conn.execute(
        "UPDATE disbursement_batches SET status = 'paying', reservation_id = $2 WHERE batch_id = $1",
        batch_id,
        reservation_id,
    )


async def set_failed(conn: Conn, batch_id: str, code: str, at: datetime) -> None:
    """Nothing was paid: the batch failed with `code`, and its ready rows with it."""
    await conn.execute(
        "UPDATE disbursement_rows SET status = 'failed', code = $2 WHERE batch_id = $1 AND status = 'ready'",
        batch_id,
        code,
    )
    await conn.execute(
        "UPDATE disbursement_batches SET status = 'failed', failure_code = $2, completed_at = $3,"
        " lease_token = NULL, leased_until = NULL WHERE batch_id = $1",
        batch_id,
        code,
        at,
    )


async def ready_rows(conn: Executor, batch_id: str, after: int, limit: int) -> list[ReadyRow]:
    rows = await conn.fetch(
        "SELECT row_no, card_id, amount_fen FROM disbursement_rows WHERE batch_id = $1 AND status = 'ready'"
        " AND row_no > $2 ORDER BY row_no LIMIT $3",
        batch_id,
        after,
        limit,
    )
    return _all(ReadyRow, rows)


async def mark_paid(conn: Conn, batch_id: str, row_nos: list[int], at: datetime) -> list[ReadyRow]:
    """Rows the bank credited, paid now; those already paid (a replay after a crash) are not returned."""
    rows = await conn.fetch(
        "UPDATE disbursement_rows SET status = 'paid', paid_at = $3 WHERE batch_id = $1 AND row_no = ANY($2::int[])"
        " AND status = 'ready' RETURNING row_no, card_id, amount_fen",
        batch_id,
        row_nos,
        at,
    )
    return _all(ReadyRow, rows)


async def add_paid(conn: Conn, batch_id: str, amount_fen: int) -> None:
    await conn.execute(
        "UPDATE disbursement_batches SET paid_fen = paid_fen + $2 WHERE batch_id = $1", batch_id, amount_fen
    )


async def mark_failed(conn: Conn, batch_id: str, failures: list[tuple[int, str]]) -> None:
    await conn.executemany(
        "UPDATE disbursement_rows SET status = 'failed', code = $3 WHERE batch_id = $1 AND row_no = $2"
        " AND status = 'ready'",
        [(batch_id, row_no, code) for row_no, code in failures],
    )


async def any_ready(conn: Executor, batch_id: str) -> bool:
    found = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM disbursement_rows WHERE batch_id = $1 AND status = 'ready')", batch_id
    )
    return bool(found)


async def set_completed(conn: Conn, batch_id: str, at: datetime) -> None:
    await conn.execute(
        "UPDATE disbursement_batches SET status = 'completed', completed_at = $2, lease_token = NULL,"
        " leased_until = NULL WHERE batch_id = $1",
        batch_id,
        at,
    )


async def paid_to_card(conn: Executor, card_id: str, limit: int) -> list[PaidRow]:
    rows = await conn.fetch(
        "SELECT r.batch_id, b.merchant_id, b.item_code, r.amount_fen, r.memo, r.paid_at"
        " FROM disbursement_rows r JOIN disbursement_batches b USING (batch_id)"
        " WHERE r.card_id = $1 AND r.status = 'paid' ORDER BY r.paid_at DESC, r.batch_id, r.row_no LIMIT $2",
        card_id,
        limit,
    )
    return _all(PaidRow, rows)


# Per item, over the batches completed in [start, end): each person (by the blind index) once; paid through the card
# if any of their rows in those batches was paid. Rows refused as duplicates are the same people again.
_REACH = """
SELECT b.item_code,
       count(DISTINCT r.person_index)::int AS beneficiaries,
       count(DISTINCT r.person_index) FILTER (WHERE r.status = 'paid')::int AS paid_by_card
FROM disbursement_batches b JOIN disbursement_rows r USING (batch_id)
WHERE b.status = 'completed' AND b.completed_at >= $1 AND b.completed_at < $2
  AND (r.code IS NULL OR r.code <> 'duplicate_row')
GROUP BY b.item_code
"""


async def reach(conn: Executor, start: datetime, end: datetime) -> list[ItemReach]:
    return _all(ItemReach, await conn.fetch(_REACH, start, end))


# Per batch that reached the bank: its paid total as its rows and the ledger say, and the ledger's reserve, credits
# and release; listed when they disagree (paying: reserved = ready total; completed: reserved = disbursed + released).
_PROBLEMS = """
WITH booked AS (
    SELECT batch_id,
           COALESCE(sum(amount_fen) FILTER (WHERE kind = 'reserve'), 0) AS reserved,
           COALESCE(sum(amount_fen) FILTER (WHERE kind = 'disburse'), 0) AS disbursed,
           COALESCE(sum(amount_fen) FILTER (WHERE kind = 'release'), 0) AS released
    FROM ledger_transfers WHERE batch_id IS NOT NULL GROUP BY batch_id
),
rows_paid AS (
    SELECT batch_id, COALESCE(sum(amount_fen), 0) AS paid FROM disbursement_rows WHERE status = 'paid'
    GROUP BY batch_id
)
SELECT b.batch_id, b.status, b.paid_fen, COALESCE(p.paid, 0)::bigint AS rows_paid_fen,
       COALESCE(k.reserved, 0)::bigint AS reserved, COALESCE(k.disbursed, 0)::bigint AS disbursed,
       COALESCE(k.released, 0)::bigint AS released
FROM disbursement_batches b LEFT JOIN booked k USING (batch_id) LEFT JOIN rows_paid p USING (batch_id)
WHERE b.paid_fen <> COALESCE(p.paid, 0) OR b.paid_fen <> COALESCE(k.disbursed, 0)
   OR (b.status = 'paying' AND COALESCE(k.reserved, 0) <> b.amount_total_fen)
   OR (b.status = 'completed' AND COALESCE(k.reserved, 0) <> COALESCE(k.disbursed, 0) + COALESCE(k.released, 0))
   OR (b.status NOT IN ('paying', 'completed') AND (COALESCE(k.reserved, 0) <> 0 OR COALESCE(k.disbursed, 0) <> 0))
ORDER BY b.batch_id LIMIT 100
"""


async def problems(conn: Executor) -> list[BatchProblem]:
    return _all(BatchProblem, await conn.fetch(_PROBLEMS))
