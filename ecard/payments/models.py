"""Bills, payments, refunds, callbacks and statements as the API speaks them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

# PostgreSQL text cannot hold U+0000, and what a citizen is shown has no business with control characters.
OutNo = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-|*@.]+$")]
ItemCode = Annotated[str, msgspec.Meta(min_length=1, max_length=32, pattern=r"^[a-z0-9][a-z0-9_-]*$")]
Fen = Annotated[int, msgspec.Meta(gt=0, le=100_000_000_000)]
Description = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")]
Reason = Annotated[str, msgspec.Meta(max_length=128, pattern=r"^[^\x00-\x1f\x7f]*$")]
# the shape only; where it may point (public https) is the service's check (ecard.payments.destinations)
NotifyUrl = Annotated[str, msgspec.Meta(min_length=8, max_length=512, pattern=r"^https?://[^\s\x00-\x1f\x7f]+$")]
ExpiresIn = Annotated[int, msgspec.Meta(ge=60, le=7 * 86400)]
Pin = Annotated[str, msgspec.Meta(min_length=1, max_length=16)]

DEFAULT_EXPIRES_IN_S = 7200


class NewBill(msgspec.Struct, forbid_unknown_fields=True):
    out_bill_no: OutNo
    item_code: ItemCode
    amount_fen: Fen
    description: Description
    notify_url: NotifyUrl
    expires_in_s: ExpiresIn = DEFAULT_EXPIRES_IN_S


class BillAnswer(msgspec.Struct):
    """A bill as its merchant sees it."""

    bill_id: str
    out_bill_no: str
    status: str
    item_code: str
    amount_fen: int
    description: str
    notify_url: str
    pull_up_url: str
    created_at: str
    expires_at: str
    refunded_fen: int = 0
    paid_at: str | None = None
    transaction_id: str | None = None
    closed_at: str | None = None


class BillView(msgspec.Struct):
    """A bill as the citizen's app shows it before paying."""

    bill_id: str
    merchant_name: str
    item_code: str
    item_name: str
    amount_fen: int
    description: str
    status: str
    expires_at: str


class Payment(msgspec.Struct, forbid_unknown_fields=True):
    pin: Pin


class Paid(msgspec.Struct):
    status: str
    transaction_id: str
    paid_at: str


class NewRefund(msgspec.Struct, forbid_unknown_fields=True):
    out_refund_no: OutNo
    amount_fen: Fen
    reason: Reason = ""


class RefundAnswer(msgspec.Struct):
    refund_id: str
    out_refund_no: str
    bill_id: str
    amount_fen: int
    reason: str
    status: str
    created_at: str
    refunded_at: str | None = None


class NotificationAttempt(msgspec.Struct):
    event_id: str
    event: str
    attempted_at: str
    http_status: int | None
    error: str | None


class Notifications(msgspec.Struct):
    bill_id: str
    items: list[NotificationAttempt]


class StatementBill(msgspec.Struct):
    bill_id: str
    out_bill_no: str
    item_code: str
    amount_fen: int
    paid_at: str
    transaction_id: str


class StatementRefund(msgspec.Struct):
    refund_id: str
    out_refund_no: str
    bill_id: str
    amount_fen: int
    status: str
    created_at: str
    refunded_at: str | None


class Totals(msgspec.Struct):
    paid_count: int
    paid_fen: int
    refund_count: int
    refunded_fen: int
    net_fen: int


class Statement(msgspec.Struct):
    date: str
    merchant_id: str
    bills: list[StatementBill]
    refunds: list[StatementRefund]
    totals: Totals


# Rows as the store reads them.


class Bill(msgspec.Struct, frozen=True):
    """A bill as stored, with whether a payment attempt of it is unsettled (and its holder's lease)."""

    bill_id: str
    merchant_id: str
    out_bill_no: str
    body_hash: bytes
    item_code: str
    amount_fen: int
    description: str
    notify_url: str
    status: str
    created_at: datetime
    expires_at: datetime
    paid_at: datetime | None
    closed_at: datetime | None
    card_id: str | None
    transaction_id: str | None
    refunded_fen: int
    paying: bool
    paying_until: datetime | None


class Attempt(msgspec.Struct, frozen=True):
    """One attempt to move a bill's money: `claimed` until it is `succeeded`, `failed` or `reversed`."""

    transfer_id: str
    bill_id: str
    card_id: str
    amount_fen: int
    state: str
    created_at: datetime
    leased_until: datetime | None
    lease_token: str | None


class Refund(msgspec.Struct, frozen=True):
    refund_id: str
    bill_id: str
    merchant_id: str
    out_refund_no: str
    body_hash: bytes
    amount_fen: int
    reason: str
    card_id: str
    state: str
    created_at: datetime
    refunded_at: datetime | None
    leased_until: datetime | None
    lease_token: str | None


class LeasedEvent(msgspec.Struct, frozen=True):
    """An outbox event a deliverer holds the lease of until it has posted it once."""

    event_id: str
    merchant_id: str
    notify_url: str
    body: bytes
    attempts: int
    created_at: datetime
    lease_token: str


class DeliveryRow(msgspec.Struct, frozen=True):
    event_id: str
    event: str
    attempted_at: datetime
    http_status: int | None
    error: str | None


class PaidBill(msgspec.Struct, frozen=True):
    bill_id: str
    out_bill_no: str
    item_code: str
    amount_fen: int
    paid_at: datetime
    transaction_id: str


class RefundLine(msgspec.Struct, frozen=True):
    refund_id: str
    out_refund_no: str
    bill_id: str
    amount_fen: int
    state: str
    created_at: datetime
    refunded_at: datetime | None


class UnbalancedTransfer(msgspec.Struct, frozen=True):
    transfer_id: str
    total: int
    legs: int


class BillMismatch(msgspec.Struct, frozen=True):
    """A bill whose state and ledger disagree, with what the ledger holds for it."""

    bill_id: str
    status: str
    amount_fen: int
    refunded_fen: int
    settled: int
    debited: int
    reversed: int
    refunded: int
    credited: int
    refunds_succeeded: int


class BankMovement(msgspec.Struct, frozen=True):
    """A ledger transfer that mirrors a movement at the bank, with the card account it touched."""

    bank_transfer_id: str
    kind: str
    amount_fen: int
    booked_at: datetime
    account: str
