"""Requests, answers and stored values of disbursement batches."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

OutNo = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_\-|*@.]{1,64}$")]
Text = Annotated[str, msgspec.Meta(max_length=140, pattern=r"^[^\x00-\x1f\x7f]*$")]
Reason = Annotated[str, msgspec.Meta(max_length=200)]
# The most rows one batch may have (API.md), and the most the row listing answers at once.
MAX_ROWS = 100_000
MAX_PAGE = 10_000


class NewRow(msgspec.Struct, forbid_unknown_fields=True):
    """One payout as the paying department sends it; an amount that is no positive integer is refused per row."""

    out_row_no: OutNo
    id_number: Annotated[str, msgspec.Meta(max_length=64)]
    name: Annotated[str, msgspec.Meta(max_length=64)]
    amount_fen: int | float | str
    memo: Text = ""


class BatchHeader(msgspec.Struct, forbid_unknown_fields=True):
    out_batch_no: OutNo
    item_code: Annotated[str, msgspec.Meta(max_length=32)]
    description: Text
    notify_url: Annotated[str, msgspec.Meta(max_length=2048)]


class NewBatch(msgspec.Struct, forbid_unknown_fields=True):
    out_batch_no: OutNo
    item_code: Annotated[str, msgspec.Meta(max_length=32)]
    description: Text
    notify_url: Annotated[str, msgspec.Meta(max_length=2048)]
    rows: Annotated[list[NewRow], msgspec.Meta(min_length=1, max_length=MAX_ROWS)]

    def header(self) -> BatchHeader:
        return BatchHeader(self.out_batch_no, self.item_code, self.description, self.notify_url)


class Decision(msgspec.Struct, forbid_unknown_fields=True):
    reason: Reason = ""


class Counts(msgspec.Struct):
    ready: int = 0
    rejected: int = 0
    paid: int = 0
    failed: int = 0


class Approvals(msgspec.Struct):
    needed: int
    given: int


class BatchAnswer(msgspec.Struct):
    """A batch as its merchant and operators see it: no name and no ID number."""

    batch_id: str
    out_batch_no: str
    status: str
    item_code: str
    description: str
    rows_total: int
    amount_total_fen: int
    counts: Counts
    paid_fen: int
    approvals: Approvals
    failure_code: str | None
    created_at: str
    expires_at: str
    completed_at: str | None


class RowAnswer(msgspec.Struct):
    row_no: int
    out_row_no: str
    status: str
    code: str | None
    amount_fen: int
    paid_at: str | None


class RowPage(msgspec.Struct):
    items: list[RowAnswer]
    # pass as `after` for the next page; null on the last
    next_after: int | None


class HolderPayout(msgspec.Struct):
    payer_name: str
    item_code: str
    item_name: str
    amount_fen: int
    memo: str
    paid_at: str
    batch_id: str


class HolderPayouts(msgspec.Struct):
    items: list[HolderPayout]


# --- stored values ------------------------------------------------------------------------------


class Batch(msgspec.Struct, frozen=True):
    batch_id: str
    merchant_id: str
    out_batch_no: str
    body_hash: bytes
    item_code: str
    description: str
    notify_url: str
    status: str
    rows_total: int
    amount_total_fen: int
    paid_fen: int
    approvals_needed: int
    first_approver: str | None
    second_approver: str | None
    failure_code: str | None
    reservation_id: str | None
    created_at: datetime
    expires_at: datetime
    approved_at: datetime | None
    completed_at: datetime | None
    lease_token: str | None


class StatusCount(msgspec.Struct, frozen=True):
    status: str
    n: int


class RowRecord(msgspec.Struct, frozen=True):
    row_no: int
    out_row_no: str
    status: str
    code: str | None
    amount_fen: int
    paid_at: datetime | None


class ReadyRow(msgspec.Struct, frozen=True):
    row_no: int
    card_id: str
    amount_fen: int


class PaidRow(msgspec.Struct, frozen=True):
    batch_id: str
    merchant_id: str
    item_code: str
    amount_fen: int
    memo: str
    paid_at: datetime


class ItemReach(msgspec.Struct, frozen=True):
    """Per item over a year's completed batches: distinct beneficiaries, and those of them paid through the card."""

    item_code: str
    beneficiaries: int
    paid_by_card: int


class BatchProblem(msgspec.Struct, frozen=True):
    batch_id: str
    status: str
    paid_fen: int
    rows_paid_fen: int
    reserved: int
    disbursed: int
    released: int
