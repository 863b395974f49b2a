"""Complaints (投诉, regulation art. 20): filed from the holder's device or by the public, tracked to a due date.

The text, the contact and the replies are personal data: sealed at rest with the PII key, bound to their
row's id, opened only for the operator handling the case (audited) and for the complainant (the replies),
and never logged. The tracking code is shown once, in the answer to the filing, and kept as its SHA-256.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

import asyncpg
import redis.asyncio as aioredis

from ecard.complaints import store
from ecard.complaints.models import (
    CLOSED,
    ComplaintCase,
    ComplaintFiled,
    ComplaintRow,
    ComplaintSummary,
    ComplaintView,
    NewComplaint,
    NewReply,
    OperatorReply,
    Reply,
    ReplyAnswer,
    ReplyRow,
)
from ecard.kit import audit
from ecard.kit.clock import Clock, iso, to_datetime
from ecard.kit.crypto import Keys
from ecard.kit.ids import id_to_bytes, new_id
from ecard.kit.principal import Principal
from ecard.kit.refusal import Refusal

# Crockford base32 without the letters people misread; 20 characters are 100 random bits, in groups of four.
_TRACKING_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_TRACKING_CHARS = 20
_TRACKING_READS = str.maketrans({"O": "0", "I": "1", "L": "1"})
# compared against when no complaint has the id, so that an unknown id costs what a wrong code costs
_NOBODY = hashlib.sha256(b"complaint-tracking|nobody").digest()
LISTED = 200
_NOT_FOUND = "no complaint with this id for this tracking code or device"


@dataclass(frozen=True)
class ComplaintPolicy:
    """Due date, and how many complaints one source address (public) or one card (device) may file per window."""

    due_days: int = 15
    per_source: int = 5
    per_card: int = 20
    window_s: int = 3600


def new_tracking_code() -> str:
    raw = "".join(secrets.choice(_TRACKING_ALPHABET) for _ in range(_TRACKING_CHARS))
    return "-".join(raw[i : i + 4] for i in range(0, _TRACKING_CHARS, 4))


def tracking_hash(code: str) -> bytes | None:
    """The stored form of a tracking code, read as people type it (any case, dashes, spaces); None if not one."""
    plain = "".join(code.split()).replace("-", "").upper().translate(_TRACKING_READS)
    if len(plain) != _TRACKING_CHARS or any(c not in _TRACKING_ALPHABET for c in plain):
        return None
    return hashlib.sha256(b"complaint-tracking|" + plain.encode()).digest()


def _complaint_id(value: str) -> bool:
    try:
        id_to_bytes(value)
    except ValueError:
        return False
    return value.startswith("cmp_")


def _link_refused(field: str, detail: str) -> Refusal:
    return Refusal("complaint_link_refused", detail, extra={"fields": [field]})


def _invalid(field: str, detail: str) -> Refusal:
    return Refusal("invalid_request", detail, extra={"fields": [field]})


class Complaints:
    def __init__(
        self,
        pool: asyncpg.Pool,
        redis: aioredis.Redis,
        keys: Keys,
        clock: Clock,
        prefix: str,
        policy: ComplaintPolicy | None = None,
    ) -> None:
        self._pool = pool
        self._redis = redis
        self._keys = keys
        self._clock = clock
        self._prefix = prefix
        self._policy = policy or ComplaintPolicy()

    # --- filing --------------------------------------------------------------------------------------

    async def file(self, data: NewComplaint, device: Principal | None, source: str) -> ComplaintFiled:
        """A complaint from the card's device (`device`), or from the public at `source` (then with a contact)."""
        text = data.text.strip()
        contact = data.contact.strip() if data.contact is not None else None
        if not text:
            raise _invalid("text", "the complaint's text is empty")
        if contact == "":
            raise _invalid("contact", "the contact is empty")
        if device is None:
            if contact is None:
                raise _invalid("contact", "a complaint without the holder's device needs a contact")
            if data.card_id is not None:
                raise _invalid("card_id", "card_id is for a complaint signed by the card's own device")
            if data.verification_id is not None or data.bill_id is not None:
                field = "verification_id" if data.verification_id is not None else "bill_id"
                raise _link_refused(field, "only the holder's own device can name a verification or a bill")
            card_id = None
        else:
            card_id = device.parent_id
            if card_id is None or (data.card_id is not None and data.card_id != card_id):
                raise Refusal("forbidden", "a device may complain about its own card only")
        now = self._clock.now()
        await self._admit(card_id, source, now)
        merchant_id = await self._links(data, card_id)

        complaint_id = new_id("cmp")
        code = new_tracking_code()
        hashed = tracking_hash(code)
        assert hashed is not None  # a code we just made is one
        row = ComplaintRow(
            complaint_id=complaint_id,
            tracking_hash=hashed,
            channel="device" if device is not None else "public",
            card_id=card_id,
            device_id=device.owner_id if device is not None else None,
            category=data.category,
            text_sealed=self._keys.seal_pii(text, f"complaint-text:{complaint_id}"),
            contact_sealed=(
                self._keys.seal_pii(contact, f"complaint-contact:{complaint_id}") if contact is not None else None
            ),
            merchant_id=merchant_id,
            verification_id=data.verification_id,
            bill_id=data.bill_id,
            status="received",
            received_at=to_datetime(now),
            due_at=to_datetime(now + self._policy.due_days * 86400),
        )
        actor = f"device:{device.owner_id}" if device is not None else "public"
        detail = {"channel": row.channel, "category": row.category, "card_id": card_id, "merchant_id": merchant_id}
        async with self._pool.acquire() as conn:
            await store.insert_complaint(conn, row, actor, detail)
        return ComplaintFiled(
            complaint_id=complaint_id, tracking_code=code, status=row.status, due_at=iso(row.due_at.timestamp())
        )

    async def _admit(self, card_id: str | None, source: str, now: float) -> None:
        """Count the filing against its card's or its source address's allowance before any query."""
        policy = self._policy
        window = int(now // policy.window_s)
        if card_id is not None:
            scope, subject, allowance = "card", card_id, policy.per_card
        else:
            scope, subject, allowance = "source", source, policy.per_source
        used = await store.count_filing(self._redis, self._prefix, scope, subject, window, 2 * policy.window_s)
        if used > allowance:
            wait = max(1, int((window + 1) * policy.window_s - now + 0.999))
            raise Refusal("too_many_requests", "too many complaints filed from here; try again later", retry_after=wait)

    async def _links(self, data: NewComplaint, card_id: str | None) -> str | None:
        """The merchant the complaint is about: as named, or of the holder's own verification or bill it names."""
        merchants: list[tuple[str, str]] = []
        if data.merchant_id is not None:
            if not await store.merchant_exists(self._pool, data.merchant_id):
                raise _link_refused("merchant_id", "no merchant has this id")
            merchants.append(("merchant_id", data.merchant_id))
        if card_id is not None and data.verification_id is not None:
            found = await store.merchant_of_card_verification(self._pool, data.verification_id, card_id)
            if found is None:
                raise _link_refused("verification_id", "no verification of this card has this id")
            merchants.append(("verification_id", found))
        if card_id is not None and data.bill_id is not None:
            found = await store.merchant_of_card_bill(self._pool, data.bill_id, card_id)
            if found is None:
                raise _link_refused("bill_id", "no bill of this card has this id")
            merchants.append(("bill_id", found))
        for field, merchant in merchants[1:]:
            if merchant != merchants[0][1]:
                raise _link_refused(field, f"the {field} names another merchant than the complaint's")
        return merchants[0][1] if merchants else None

    # --- the complainant -----------------------------------------------------------------------------

    async def for_citizen(
        self, complaint_id: str, tracking_code: str | None, device: Principal | None
    ) -> ComplaintView:
        """Status and replies, for whoever holds the tracking code or the card's device; one answer otherwise."""
        if device is None and tracking_code is None:
            raise Refusal("unauthorized", "send the tracking code (Ecard-Tracking-Code) or sign as the card's device")
        row = await store.complaint(self._pool, complaint_id) if _complaint_id(complaint_id) else None
        if device is not None:
            allowed = row is not None and row.card_id is not None and row.card_id == device.parent_id
        else:
            offered = tracking_hash(tracking_code or "") or bytes(32)
            expected = row.tracking_hash if row is not None else _NOBODY
            allowed = hmac.compare_digest(offered, expected) and row is not None
        if not allowed or row is None:
            raise Refusal("not_found", _NOT_FOUND)
        replies = await store.replies(self._pool, row.complaint_id)
        return ComplaintView(
            complaint_id=row.complaint_id,
            category=row.category,
            status=row.status,
            received_at=iso(row.received_at.timestamp()),
            due_at=iso(row.due_at.timestamp()),
            replies=[
                Reply(text=self._reply_text(r), status=r.status, replied_at=iso(r.replied_at.timestamp()))
                for r in replies
            ],
        )

    async def of_card(self, device: Principal, card_id: str) -> list[ComplaintSummary]:
        """The complaints filed from the card's devices, newest first."""
        if device.parent_id != card_id:
            raise Refusal("forbidden", "a device may act on its own card only")
        now = self._clock.now()
        return [self._summary(row, now) for row in await store.complaints_of_card(self._pool, card_id, LISTED)]

    # --- operators -----------------------------------------------------------------------------------

    async def listed(self, status: str | None, *, overdue: bool) -> list[ComplaintSummary]:
        """Complaints by due date; `overdue`: only those still open past their due date."""
        now = self._clock.now()
        rows = await store.complaints(self._pool, status, to_datetime(now) if overdue else None, LISTED)
        return [self._summary(row, now) for row in rows]

    async def case(self, operator: str, complaint_id: str) -> ComplaintCase:
        """The whole complaint, text and contact opened; the reading is audited."""
        row = await store.complaint(self._pool, complaint_id) if _complaint_id(complaint_id) else None
        if row is None:
            raise Refusal("not_found", "no complaint has this id")
        async with self._pool.acquire() as conn, conn.transaction():
            await audit.record(conn, operator, "complaint.read", complaint_id, {})
        replies = await store.replies(self._pool, complaint_id)
        return ComplaintCase(
            complaint_id=row.complaint_id,
            channel=row.channel,
            category=row.category,
            status=row.status,
            text=self._keys.open_pii(row.text_sealed, f"complaint-text:{row.complaint_id}"),
            contact=(
                self._keys.open_pii(row.contact_sealed, f"complaint-contact:{row.complaint_id}")
                if row.contact_sealed is not None
                else None
            ),
            card_id=row.card_id,
            merchant_id=row.merchant_id,
            verification_id=row.verification_id,
            bill_id=row.bill_id,
            received_at=iso(row.received_at.timestamp()),
            due_at=iso(row.due_at.timestamp()),
            overdue=self._overdue(row, self._clock.now()),
            replies=[
                OperatorReply(
                    reply_id=r.reply_id,
                    operator_id=r.operator_id,
                    text=self._reply_text(r),
                    status=r.status,
                    replied_at=iso(r.replied_at.timestamp()),
                )
                for r in replies
            ],
        )

    async def reply(self, operator: str, complaint_id: str, data: NewReply) -> ReplyAnswer:
        """An operator's reply, which sets the complaint's status; a resolved or rejected complaint takes none."""
        text = data.text.strip()
        if not text:
            raise _invalid("text", "the reply's text is empty")
        if not _complaint_id(complaint_id):
            raise Refusal("not_found", "no complaint has this id")
        now = self._clock.now()
        reply_id = new_id("crp")
        reply = ReplyRow(
            reply_id=reply_id,
            complaint_id=complaint_id,
            operator_id=operator,
            status=data.status,
            text_sealed=self._keys.seal_pii(text, f"complaint-reply:{reply_id}"),
            replied_at=to_datetime(now),
        )
        async with self._pool.acquire() as conn, conn.transaction():
            row = await store.complaint(conn, complaint_id, for_update=True)
            if row is None:
                raise Refusal("not_found", "no complaint has this id")
            if row.status in CLOSED:
                raise Refusal("complaint_closed", f"the complaint is {row.status} and takes no further replies")
            await store.insert_reply(conn, reply)
            detail = {"reply_id": reply_id, "status": data.status, "was": row.status}
            await audit.record(conn, operator, "complaint.replied", complaint_id, detail)
        return ReplyAnswer(reply_id=reply_id, complaint_id=complaint_id, status=data.status, replied_at=iso(now))

    # --- helpers -------------------------------------------------------------------------------------

    def _reply_text(self, reply: ReplyRow) -> str:
        return self._keys.open_pii(reply.text_sealed, f"complaint-reply:{reply.reply_id}")

    @staticmethod
    def _overdue(row: ComplaintRow, now: float) -> bool:
        return row.status not in CLOSED and row.due_at.timestamp() < now

    def _summary(self, row: ComplaintRow, now: float) -> ComplaintSummary:
        return ComplaintSummary(
            complaint_id=row.complaint_id,
            channel=row.channel,
            category=row.category,
            status=row.status,
            card_id=row.card_id,
            merchant_id=row.merchant_id,
            received_at=iso(row.received_at.timestamp()),
            due_at=iso(row.due_at.timestamp()),
            overdue=self._overdue(row, now),
        )
