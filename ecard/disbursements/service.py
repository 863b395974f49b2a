"""Disbursement batches: creation with every row validated, operators' approval, what merchants and holders see.

A batch is created in one database transaction: its row first (the unique (merchant, out_batch_no) makes a racing
second creation wait, then see this one), then its rows, validated and written a chunk at a time as they are parsed.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
import msgspec

from ecard.cards import Cards
from ecard.catalog import Catalog
from ecard.disbursements import store
from ecard.disbursements.models import (
    MAX_PAGE,
    MAX_ROWS,
    Approvals,
    Batch,
    BatchAnswer,
    BatchHeader,
    Counts,
    HolderPayout,
    NewRow,
    RowAnswer,
    RowPage,
)
from ecard.kit import audit
from ecard.kit.clock import Clock, iso, to_datetime
from ecard.kit.ids import new_id
from ecard.kit.infra import Conn, Executor
from ecard.kit.principal import Principal
from ecard.kit.refusal import Refusal
from ecard.merchants import Merchants
from ecard.payments import enqueue_batch

# Rows validated and written together: one look-up of their cards, one COPY.
CHUNK = 2_000
# The largest payout one row may carry (10^10 fen: a hundred million yuan).
MAX_ROW_FEN = 10**10
HOLDER_SHOWN = 100
ROW_STATUSES = frozenset({"ready", "rejected", "paid", "failed"})
# how many batches the operators' list shows, newest first
BATCHES_LISTED = 100
BATCH_STATUSES = frozenset(
    {"validating", "awaiting_approval", "approved", "paying", "completed", "rejected", "failed", "expired"}
)


@dataclass(frozen=True)
class DisbursementPolicy:
    dual_approval_fen: int
    approval_ttl_s: float


@dataclass(frozen=True)
class BatchMade:
    batch: BatchAnswer
    created: bool


def amount_of(raw: float | str) -> int | None:
    """The row's amount in fen when it is a whole number of fen in (0, MAX_ROW_FEN]; else None (invalid_amount)."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, str):
        text = raw.strip()
        if not text.isascii() or not text.isdigit():
            return None
        raw = int(text)
    if isinstance(raw, float):
        if not raw.is_integer():
            return None
        raw = int(raw)
    return raw if 0 < raw <= MAX_ROW_FEN else None


class _Hash:
    """SHA-256 over the batch's fields and each row as parsed: JSON and CSV of the same rows hash alike."""

    def __init__(self, header: BatchHeader) -> None:
        self._sha = hashlib.sha256(msgspec.json.encode(header))

    def row(self, row: NewRow) -> None:
        self._sha.update(msgspec.json.encode([row.out_row_no, row.id_number, row.name, str(row.amount_fen), row.memo]))

    def digest(self) -> bytes:
        return self._sha.digest()


@dataclass
class _Tally:
    rows: int = 0
    ready_fen: int = 0


def _ts(value: datetime | None) -> str | None:
    return iso(value.timestamp()) if value is not None else None


def batch_answer(batch: Batch, counts: Counts) -> BatchAnswer:
    given = (batch.first_approver is not None) + (batch.second_approver is not None)
    return BatchAnswer(
        batch_id=batch.batch_id,
        out_batch_no=batch.out_batch_no,
        status=batch.status,
        item_code=batch.item_code,
        description=batch.description,
        rows_total=batch.rows_total,
        amount_total_fen=batch.amount_total_fen,
        counts=counts,
        paid_fen=batch.paid_fen,
        approvals=Approvals(needed=batch.approvals_needed, given=given),
        failure_code=batch.failure_code,
        created_at=iso(batch.created_at.timestamp()),
        expires_at=iso(batch.expires_at.timestamp()),
        completed_at=_ts(batch.completed_at),
    )


def batch_event_fields(batch: Batch, counts: Counts) -> dict[str, object]:
    """What a batch event tells the merchant: numbers only, never a name or an ID number."""
    return {
        "out_batch_no": batch.out_batch_no,
        "status": batch.status,
        "item_code": batch.item_code,
        "rows_total": batch.rows_total,
        "amount_total_fen": batch.amount_total_fen,
        "paid_fen": batch.paid_fen,
        "counts": msgspec.to_builtins(counts),
        "failure_code": batch.failure_code,
    }


async def batch_counts(conn: Executor, batch_id: str) -> Counts:
    found = {c.status: c.n for c in await store.counts(conn, batch_id)}
    return Counts(**{status: found.get(status, 0) for status in ROW_STATUSES})


class Disbursements:
    def __init__(
        self,
        pool: asyncpg.Pool,
        clock: Clock,
        merchants: Merchants,
        catalog: Catalog,
        cards: Cards,
        check_url: Callable[[str], None],
        wake: Callable[[], None],
        policy: DisbursementPolicy,
    ) -> None:
        self._pool = pool
        self._clock = clock
        self._merchants = merchants
        self._catalog = catalog
        self._cards = cards
        self._check_url = check_url
        # the payer and the callback deliverer: there is work for them
        self._wake = wake
        self._policy = policy

    async def _entitled(self, merchant_id: str, item_code: str) -> None:
        merchant = await self._merchants.get(merchant_id)
        if merchant is None or merchant.status != "active":
            raise Refusal("forbidden", "the merchant is not active")
        item = await self._catalog.item(item_code, to_datetime(self._clock.now()).date())
        if item is None:
            raise Refusal("item_unknown", "no catalog item in force has this code")
        if "disbursement" not in item.functions:
            raise Refusal("merchant_not_entitled", "this item is not a disbursement item (资金发放)")
        if item_code not in merchant.items or "disbursement" not in merchant.functions:
            raise Refusal("merchant_not_entitled", "the merchant is not entitled to disburse for this item")

    async def create(self, merchant_id: str, header: BatchHeader, rows: Iterable[NewRow]) -> BatchMade:
        """A new batch with every row validated, or the same batch again for the same number and body."""
        self._check_url(header.notify_url)
        await self._entitled(merchant_id, header.item_code)
        digest = _Hash(header)
        now = self._clock.now()
        batch_id = new_id("dsb")
        rows = iter(rows)
        async with self._pool.acquire() as conn, conn.transaction():
            created = await store.insert_batch(
                conn,
                batch_id,
                merchant_id,
                header.out_batch_no,
                header.item_code,
                header.description,
                header.notify_url,
                to_datetime(now),
                to_datetime(now + self._policy.approval_ttl_s),
            )
            if created:
                tally = await self._validate(conn, batch_id, rows, digest)
                needed = 2 if tally.ready_fen > self._policy.dual_approval_fen else 1
                await store.validated(conn, batch_id, digest.digest(), tally.rows, tally.ready_fen, needed)
        if not created:
            for row in rows:
                digest.row(row)
            found = await store.batch_by_out_no(self._pool, merchant_id, header.out_batch_no)
            assert found is not None
            if not hmac.compare_digest(found.body_hash, digest.digest()):
                raise Refusal("idempotency_conflict", "this out_batch_no was used for a batch with another body")
            batch_id = found.batch_id
        return BatchMade(await self._answer(batch_id), created)

    async def _validate(self, conn: Conn, batch_id: str, rows: Iterable[NewRow], digest: _Hash) -> _Tally:
        tally = _Tally()
        seen_out: set[str] = set()
        seen_people: set[bytes] = set()
        chunk: list[NewRow] = []

        async def flush() -> None:
            payees = await self._cards.payees([(r.id_number, r.name) for r in chunk])
            records = []
            for row, payee in zip(chunk, payees, strict=True):
                tally.rows += 1
                amount = amount_of(row.amount_fen)
                code: str | None
                if row.out_row_no in seen_out:
                    code = "duplicate_row"
                elif amount is None:
                    code = "invalid_amount"
                elif payee.person_index in seen_people:
                    code = "duplicate_row"
                else:
                    code = payee.refusal
                seen_out.add(row.out_row_no)
                seen_people.add(payee.person_index)
                if code is None and amount is not None:
                    tally.ready_fen += amount
                records.append(
                    (
                        batch_id,
                        tally.rows,
                        row.out_row_no,
                        payee.person_index,
                        payee.card_id if code is None else None,
                        amount or 0,
                        row.memo,
                        "ready" if code is None else "rejected",
                        code,
                    )
                )
            await store.insert_rows(conn, records)
            chunk.clear()

        for row in rows:
            if tally.rows + len(chunk) >= MAX_ROWS:
                raise Refusal("invalid_request", f"a batch has at most {MAX_ROWS} rows", extra={"fields": ["rows"]})
            digest.row(row)
            chunk.append(row)
            if len(chunk) >= CHUNK:
                await flush()
        if chunk:
            await flush()
        if tally.rows == 0:
            raise Refusal("invalid_request", "a batch needs at least one row", extra={"fields": ["rows"]})
        return tally

    async def _answer(self, batch_id: str) -> BatchAnswer:
        batch = await store.batch(self._pool, batch_id)
        assert batch is not None
        return batch_answer(batch, await batch_counts(self._pool, batch_id))

    async def _merchant_batch(self, merchant_id: str | None, batch_id: str) -> Batch:
        batch = await store.batch(self._pool, batch_id)
        # another merchant's batch is as absent as one that does not exist
        if batch is None or (merchant_id is not None and batch.merchant_id != merchant_id):
            raise Refusal("not_found", "no batch with this id")
        return batch

    async def get(self, merchant_id: str | None, batch_id: str) -> BatchAnswer:
        """A batch for its merchant (`merchant_id`) or for an operator (None)."""
        batch = await self._merchant_batch(merchant_id, batch_id)
        return batch_answer(batch, await batch_counts(self._pool, batch_id))

    async def listed(self, status: str | None, limit: int = BATCHES_LISTED) -> list[BatchAnswer]:
        """The newest batches for operators, of one status or of any."""
        if status is not None and status not in BATCH_STATUSES:
            raise Refusal("invalid_request", f"status is one of {sorted(BATCH_STATUSES)}", extra={"fields": ["status"]})
        found = await store.recent_batches(self._pool, status, limit)
        return [batch_answer(batch, await batch_counts(self._pool, batch.batch_id)) for batch in found]

    async def approvers(self, batch_id: str) -> list[str]:
        """The operators who have approved the batch so far, first one first."""
        batch = await self._merchant_batch(None, batch_id)
        return [who for who in (batch.first_approver, batch.second_approver) if who is not None]

    async def rows(self, merchant_id: str | None, batch_id: str, status: str | None, after: int, limit: int) -> RowPage:
        if status is not None and status not in ROW_STATUSES:
            raise Refusal("invalid_request", f"status is one of {sorted(ROW_STATUSES)}", extra={"fields": ["status"]})
        if not 1 <= limit <= MAX_PAGE:
            raise Refusal("invalid_request", f"limit is 1 to {MAX_PAGE}", extra={"fields": ["limit"]})
        if not 0 <= after <= MAX_ROWS:
            raise Refusal("invalid_request", f"after is 0 to {MAX_ROWS}", extra={"fields": ["after"]})
        await self._merchant_batch(merchant_id, batch_id)
        found = await store.rows_page(self._pool, batch_id, status, after, limit)
        items = [RowAnswer(r.row_no, r.out_row_no, r.status, r.code, r.amount_fen, _ts(r.paid_at)) for r in found]
        return RowPage(items=items, next_after=found[-1].row_no if len(found) == limit else None)

    async def approve(self, operator: str, batch_id: str, reason: str) -> BatchAnswer:
        """One operator's approval; above the threshold the second, by another operator, lets the money move."""
        now = self._clock.now()
        expired = False
        async with self._pool.acquire() as conn, conn.transaction():
            batch = await store.batch_for_update(conn, batch_id)
            if batch is None:
                raise Refusal("not_found", "no batch with this id")
            if batch.status != "awaiting_approval":
                raise Refusal("batch_not_approvable", f"the batch is {batch.status}")
            if batch.expires_at.timestamp() <= now:
                expired = await self._expire(conn, batch, now)
            elif operator in {batch.first_approver, batch.second_approver}:
                raise Refusal("approval_duplicate", "this operator has approved this batch already")
            elif batch.approvals_needed == 2 and batch.first_approver is None:
                await store.set_approver(conn, batch_id, operator, None)
                await audit.record(conn, operator, "disbursement.approval", batch_id, {"of": 2, "reason": reason[:200]})
            else:
                first, second = (batch.first_approver, operator) if batch.first_approver else (operator, None)
                await store.set_approver(conn, batch_id, first, second)
                await store.set_approved(conn, batch_id, to_datetime(now))
                await audit.record(
                    conn,
                    operator,
                    "disbursement.approved",
                    batch_id,
                    {"amount_total_fen": batch.amount_total_fen, "reason": reason[:200]},
                )
        if expired:
            self._wake()
            raise Refusal("batch_not_approvable", "the batch expired before it was approved")
        self._wake()
        return await self._answer(batch_id)

    async def reject(self, operator: str, batch_id: str, reason: str) -> BatchAnswer:
        if not reason.strip():
            raise Refusal("invalid_request", "a rejection needs a reason", extra={"fields": ["reason"]})
        now = self._clock.now()
        async with self._pool.acquire() as conn, conn.transaction():
            batch = await store.batch_for_update(conn, batch_id)
            if batch is None:
                raise Refusal("not_found", "no batch with this id")
            if batch.status != "awaiting_approval":
                raise Refusal("batch_not_approvable", f"the batch is {batch.status}")
            await store.set_decided(conn, batch_id, "rejected", reason[:200], to_datetime(now))
            await audit.record(conn, operator, "disbursement.rejected", batch_id, {"reason": reason[:200]})
            await self._announce(conn, batch_id, "batch.failed", now)
        self._wake()
        return await self._answer(batch_id)

    async def _expire(self, conn: Conn, batch: Batch, now: float) -> bool:
        await store.set_decided(conn, batch.batch_id, "expired", "not approved in time", to_datetime(now))
        await audit.record(conn, "system", "disbursement.expired", batch.batch_id, {})
        await self._announce(conn, batch.batch_id, "batch.failed", now)
        return True

    async def _announce(self, conn: Conn, batch_id: str, event: str, now: float) -> None:
        batch = await store.batch(conn, batch_id)
        assert batch is not None
        fields = batch_event_fields(batch, await batch_counts(conn, batch_id))
        await enqueue_batch(conn, event, batch_id, batch.merchant_id, batch.notify_url, fields, now)

    async def expire_overdue(self) -> int:
        """Batches not approved within their time expire; how many did now."""
        now = self._clock.now()
        done = 0
        for batch_id in await store.overdue(self._pool, to_datetime(now), 100):
            async with self._pool.acquire() as conn, conn.transaction():
                batch = await store.batch_for_update(conn, batch_id)
                if batch is not None and batch.status == "awaiting_approval":
                    done += await self._expire(conn, batch, now)
        if done:
            self._wake()
        return done

    async def for_holder(self, device: Principal, card_id: str) -> list[HolderPayout]:
        """What was paid into the device's own card: payer, item, amount, memo, time."""
        if device.parent_id != card_id:
            raise Refusal("forbidden", "a device may see its own card only")
        paid = await store.paid_to_card(self._pool, card_id, HOLDER_SHOWN)
        today = to_datetime(self._clock.now()).date()
        payers: dict[str, str] = {}
        items: dict[str, str] = {}
        shown = []
        for row in paid:
            if row.merchant_id not in payers:
                merchant = await self._merchants.get(row.merchant_id)
                payers[row.merchant_id] = merchant.name if merchant is not None else ""
            if row.item_code not in items:
                item = await self._catalog.item(row.item_code, today)
                items[row.item_code] = item.name if item is not None else row.item_code
            shown.append(
                HolderPayout(
                    payer_name=payers[row.merchant_id],
                    item_code=row.item_code,
                    item_name=items[row.item_code],
                    amount_fen=row.amount_fen,
                    memo=row.memo,
                    paid_at=iso(row.paid_at.timestamp()),
                    batch_id=row.batch_id,
                )
            )
        return shown


async def item_reach(pool: asyncpg.Pool, year: int) -> dict[str, tuple[int, int]]:
    """Per disbursement item, over the batches completed in `year` (UTC): (beneficiaries, paid through the card)."""
    start = datetime(year, 1, 1, tzinfo=UTC)
    end = datetime(year + 1, 1, 1, tzinfo=UTC)
    return {r.item_code: (r.beneficiaries, r.paid_by_card) for r in await store.reach(pool, start, end)}


async def check(pool: asyncpg.Pool) -> list[str]:
    """What is wrong between batches, their rows and the ledger, one line each (part of `ecard ledger check`)."""
    return [
        f"batch {p.batch_id} ({p.status}): paid {p.paid_fen} fen, rows paid {p.rows_paid_fen},"
        f" ledger reserved {p.reserved}, disbursed {p.disbursed}, released {p.released}"
        for p in await store.problems(pool)
    ]
