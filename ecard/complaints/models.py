"""Complaints (投诉) as the API speaks them, and as the store holds them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

Category = Literal["card_refused", "data_misuse", "wrong_charge", "service", "other"]
ReplyStatus = Literal["accepted", "resolved", "rejected"]
# the operators' list filter: API.md writes `?status=&overdue=true`, where an empty status is no filter
StatusFilter = Literal["", "received", "accepted", "resolved", "rejected"]
# a complaint that is resolved or rejected takes no further replies, and is never overdue
CLOSED: frozenset[str] = frozenset({"resolved", "rejected"})

# Free text is sealed at rest (never a database text column), so U+0000 is no trouble; its length is bounded.
ComplaintText = Annotated[str, msgspec.Meta(min_length=1, max_length=4000)]
Contact = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
# an id the service gave out (mch_..., vrf_..., bil_..., crd_...): checked for shape before any query
LinkId = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_:.-]+$")]


class NewComplaint(msgspec.Struct, forbid_unknown_fields=True):
    category: Category
    text: ComplaintText
    merchant_id: LinkId | None = None
    verification_id: LinkId | None = None
    bill_id: LinkId | None = None
    contact: Contact | None = None
    # from the holder's device: the card it is about, when the app says so (it must be the device's own)
    card_id: LinkId | None = None


class ComplaintFiled(msgspec.Struct):
    """The answer to a new complaint: the tracking code is shown here once and never again."""

    complaint_id: str
    tracking_code: str
    status: str
    due_at: str


class NewReply(msgspec.Struct, forbid_unknown_fields=True):
    text: ComplaintText
    status: ReplyStatus


class ReplyAnswer(msgspec.Struct):
    reply_id: str
    complaint_id: str
    status: str
    replied_at: str


class Reply(msgspec.Struct):
    """An operator's reply as the citizen reads it (the operator is not named to the citizen)."""

    text: str
    status: str
    replied_at: str


class ComplaintView(msgspec.Struct):
    """What the citizen reads with the tracking code or the card's device: status and replies."""

    complaint_id: str
    category: str
    status: str
    received_at: str
    due_at: str
    replies: list[Reply]


class OperatorReply(msgspec.Struct):
    reply_id: str
    operator_id: str
    text: str
    status: str
    replied_at: str


class ComplaintCase(msgspec.Struct):
    """A complaint as the operator handling it reads it: the text and contact opened."""

    complaint_id: str
    channel: str
    category: str
    status: str
    text: str
    contact: str | None
    card_id: str | None
    merchant_id: str | None
    verification_id: str | None
    bill_id: str | None
    received_at: str
    due_at: str
    overdue: bool
    replies: list[OperatorReply]


class ComplaintSummary(msgspec.Struct):
    """One line of the operators' list: no text and no contact."""

    complaint_id: str
    channel: str
    category: str
    status: str
    card_id: str | None
    merchant_id: str | None
    received_at: str
    due_at: str
    overdue: bool


class ComplaintList(msgspec.Struct):
    items: list[ComplaintSummary]


class CardComplaints(msgspec.Struct):
    items: list[ComplaintSummary]


# --- as stored -------------------------------------------------------------------------------------


class ComplaintRow(msgspec.Struct, frozen=True):
    complaint_id: str
    tracking_hash: bytes
    channel: str
    card_id: str | None
    device_id: str | None
    category: str
    text_sealed: bytes
    contact_sealed: bytes | None
    merchant_id: str | None
    verification_id: str | None
    bill_id: str | None
    status: str
    received_at: datetime
    due_at: datetime


class ReplyRow(msgspec.Struct, frozen=True):
    reply_id: str
    complaint_id: str
    operator_id: str
    status: str
    text_sealed: bytes
    replied_at: datetime
