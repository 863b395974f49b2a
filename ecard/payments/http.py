"""HTTP for bills (merchants create, close, refund; devices pull up and pay), callbacks' log and statements."""

from __future__ import annotations

import csv
import io
import re
from typing import Any

from litestar import Controller, MediaType, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody

from ecard.kit import qr
from ecard.kit.edge import SIGNED_PROBLEMS, signed_by
from ecard.kit.principal import ClientKind, Principal
from ecard.kit.problems import problems
from ecard.kit.refusal import Refusal
from ecard.payments.models import (
    BillAnswer,
    BillView,
    NewBill,
    NewRefund,
    Notifications,
    Paid,
    Payment,
    RefundAnswer,
    Statement,
)
from ecard.payments.service import Payments, statement_day

MERCHANT = {"principal": signed_by(ClientKind.MERCHANT)}
DEVICE = {"principal": signed_by(ClientKind.DEVICE)}
_OUT_NO = re.compile(r"[A-Za-z0-9_\-|*@.]{1,64}")


class BillController(Controller):
    path = "/v1/bills"
    tags = ["payments"]  # noqa: RUF012

    @post(
        "/",
        status_code=201,
        dependencies=MERCHANT,
        summary="Create a bill (idempotent on out_bill_no: the same body again answers 200 and the same bill)",
        responses=problems(
            *SIGNED_PROBLEMS, "forbidden", "item_unknown", "merchant_not_entitled", "idempotency_conflict"
        ),
    )
    async def create(
        self, payments: NamedDependency[Payments], principal: NamedDependency[Principal], data: JSONBody[NewBill]
    ) -> Response[BillAnswer]:
        made = await payments.create_bill(principal.owner_id, data)
        return Response(made.bill, status_code=201 if made.created else 200)

    @get(
        "/",
        dependencies=MERCHANT,
        summary="The merchant's bill with this out_bill_no",
        responses=problems(*SIGNED_PROBLEMS, "not_found"),
    )
    async def by_out_no(
        self, payments: NamedDependency[Payments], principal: NamedDependency[Principal], out_bill_no: FromQuery[str]
    ) -> BillAnswer:
        if not _OUT_NO.fullmatch(out_bill_no):
            raise Refusal(
                "invalid_request", "out_bill_no is not a valid bill number", extra={"fields": ["out_bill_no"]}
            )
        return await payments.bill_by_out_no(principal.owner_id, out_bill_no)

    @get(
        "/{bill_id:str}",
        dependencies={"principal": signed_by(ClientKind.MERCHANT, ClientKind.DEVICE)},
        summary="A bill: its merchant's full view, or the citizen app's (merchant name, item, amount, status)",
        responses=problems(*SIGNED_PROBLEMS, "not_found"),
    )
    async def one(
        self, payments: NamedDependency[Payments], principal: NamedDependency[Principal], bill_id: FromPath[str]
    ) -> BillAnswer | BillView:
        if principal.kind is ClientKind.DEVICE:
            return await payments.view(bill_id)
        return await payments.bill_for_merchant(principal.owner_id, bill_id)

    @post(
        "/{bill_id:str}/pay",
        status_code=200,
        dependencies=DEVICE,
        summary="Pay the bill with the card's PIN",
        responses=problems(
            *SIGNED_PROBLEMS,
            "not_found",
            "pin_incorrect",
            "pin_locked",
            "insufficient_funds",
            "bill_not_payable",
            "payment_in_progress",
            "merchant_not_entitled",
            "card_suspended",
            "card_cancelled",
            "bank_unavailable",
        ),
    )
    async def pay(
        self,
        payments: NamedDependency[Payments],
        principal: NamedDependency[Principal],
        bill_id: FromPath[str],
        data: JSONBody[Payment],
    ) -> Paid:
        return await payments.pay(principal, bill_id, data.pin)

    @post(
        "/{bill_id:str}/close",
        status_code=200,
        dependencies=MERCHANT,
        summary="Close a pending bill: it can no longer be paid",
        responses=problems(*SIGNED_PROBLEMS, "not_found", "bill_not_closable"),
    )
    async def close(
        self, payments: NamedDependency[Payments], principal: NamedDependency[Principal], bill_id: FromPath[str]
    ) -> BillAnswer:
        return await payments.close(principal.owner_id, bill_id)

    @post(
        "/{bill_id:str}/refunds",
        status_code=201,
        dependencies=MERCHANT,
        summary="Refund some or all of a paid bill (idempotent on out_refund_no)",
        responses=problems(
            *SIGNED_PROBLEMS, "not_found", "refund_exceeds_paid", "idempotency_conflict", "bank_unavailable"
        ),
    )
    async def refund(
        self,
        payments: NamedDependency[Payments],
        principal: NamedDependency[Principal],
        bill_id: FromPath[str],
        data: JSONBody[NewRefund],
    ) -> Response[RefundAnswer]:
        made = await payments.refund(principal.owner_id, bill_id, data)
        return Response(made.refund, status_code=201 if made.created else 200)

    @get(
        "/{bill_id:str}/notifications",
        dependencies=MERCHANT,
        summary="Every delivery attempt of the bill's callbacks: when, and the HTTP status or error",
        responses=problems(*SIGNED_PROBLEMS, "not_found"),
    )
    async def notifications(
        self, payments: NamedDependency[Payments], principal: NamedDependency[Principal], bill_id: FromPath[str]
    ) -> Notifications:
        items = await payments.notifications(principal.owner_id, bill_id)
        return Notifications(bill_id=bill_id, items=items)

    @get(
        "/{bill_id:str}/qr",
        dependencies=MERCHANT,
        summary="The pull-up link as a QR for the counter (Accept: image/png or image/svg+xml)",
        responses=problems(*SIGNED_PROBLEMS, "not_found", "not_acceptable"),
        media_type="image/png",
    )
    async def qr(
        self,
        request: Request[Any, Any, Any],
        payments: NamedDependency[Payments],
        principal: NamedDependency[Principal],
        bill_id: FromPath[str],
    ) -> Response[Any]:
        link = await payments.link(principal.owner_id, bill_id)
        accept = request.headers.get("accept", "")
        if "image/svg+xml" in accept:
            return Response(qr.svg(link), media_type="image/svg+xml")
        if "image/png" in accept or "image/*" in accept or "*/*" in accept or not accept:
            return Response(qr.png(link), media_type="image/png")
        raise Refusal("not_acceptable", "the QR comes as image/png or image/svg+xml")


_CSV_COLUMNS = ["kind", "id", "out_no", "bill_id", "item_code", "amount_fen", "status", "at"]
# A cell a spreadsheet would run as a formula (or whose leading tab or CR it would eat) gets a leading quote.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> str:
    """A text cell as a spreadsheet shows it and never runs it; numbers stay numbers."""
    text = str(value)
    if isinstance(value, int) or not text.startswith(_FORMULA_STARTS):
        return text
    return "'" + text


def statement_csv(statement: Statement) -> str:
    """One line per paid bill and per refund, then the totals; every cell quoted, no cell a formula."""
    rows: list[list[object]] = [
        ["bill", b.bill_id, b.out_bill_no, b.bill_id, b.item_code, b.amount_fen, "paid", b.paid_at]
        for b in statement.bills
    ]
    rows += [
        ["refund", r.refund_id, r.out_refund_no, r.bill_id, "", -r.amount_fen, r.status, r.created_at]
        for r in statement.refunds
    ]
    totals = statement.totals
    rows += [
        ["total_paid", "", "", "", "", totals.paid_fen, totals.paid_count, statement.date],
        ["total_refunded", "", "", "", "", -totals.refunded_fen, totals.refund_count, statement.date],
        ["net", "", "", "", "", totals.net_fen, "", statement.date],
    ]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n", quoting=csv.QUOTE_ALL)
    writer.writerow(_CSV_COLUMNS)
    writer.writerows([csv_cell(cell) for cell in row] for row in rows)
    return out.getvalue()


class StatementController(Controller):
    path = "/v1/statements"
    tags = ["payments"]  # noqa: RUF012
    dependencies = MERCHANT

    @get(
        "/{day:str}",
        summary="The merchant's bills paid and refunds granted on a (UTC) day, with the ledger's totals; JSON or CSV",
        responses=problems(*SIGNED_PROBLEMS, "not_acceptable"),
    )
    async def statement(
        self,
        request: Request[Any, Any, Any],
        payments: NamedDependency[Payments],
        principal: NamedDependency[Principal],
        day: FromPath[str],
    ) -> Response[Any]:
        statement = await payments.statement(principal.owner_id, statement_day(day))
        if "text/csv" in request.headers.get("accept", ""):
            return Response(
                statement_csv(statement),
                media_type="text/csv; charset=utf-8",
                headers={"Content-Disposition": f'attachment; filename="statement-{statement.date}.csv"'},
            )
        return Response(statement, media_type=MediaType.JSON)
