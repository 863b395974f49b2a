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


def _payments(request: Request[Any, Any, Any]) -> Payments:
    payments: Payments = request.app.state.payments
    return payments


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
        self, request: Request[Any, Any, Any], principal: NamedDependency[Principal], data: JSONBody[NewBill]
    ) -> Response[BillAnswer]:
        made = await _payments(request).create_bill(principal.owner_id, data)
        return Response(made.bill, status_code=201 if made.created else 200)

    @get(
        "/",
        dependencies=MERCHANT,
        summary="The merchant's bill with this out_bill_no",
        responses=problems(*SIGNED_PROBLEMS, "not_found"),
    )
    async def by_out_no(
        self, request: Request[Any, Any, Any], principal: NamedDependency[Principal], out_bill_no: FromQuery[str]
    ) -> BillAnswer:
        if not _OUT_NO.fullmatch(out_bill_no):
            raise Refusal(
                "invalid_request", "out_bill_no is not a valid bill number", extra={"fields": ["out_bill_no"]}
            )
        return await _payments(request).bill_by_out_no(principal.owner_id, out_bill_no)

    @get(
        "/{bill_id:str}",
        dependencies={"principal": signed_by(ClientKind.MERCHANT, ClientKind.DEVICE)},
        summary="A bill: its merchant's full view, or the citizen app's (merchant name, item, amount, status)",
        responses=problems(*SIGNED_PROBLEMS, "not_found"),
    )
    async def one(
        self, request: Request[Any, Any, Any], principal: NamedDependency[Principal], bill_id: FromPath[str]
    ) -> BillAnswer | BillView:
        if principal.kind is ClientKind.DEVICE:
            return await _payments(request).view(bill_id)
        return await _payments(request).bill_for_merchant(principal.owner_id, bill_id)

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
            "card_suspended",
            "card_cancelled",
            "bank_unavailable",
        ),
    )
    async def pay(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        bill_id: FromPath[str],
        data: JSONBody[Payment],
    ) -> Paid:
        return await _payments(request).pay(principal, bill_id, data.pin)

    @post(
        "/{bill_id:str}/close",
        status_code=200,
        dependencies=MERCHANT,
        summary="Close a pending bill: it can no longer be paid",
        responses=problems(*SIGNED_PROBLEMS, "not_found", "bill_not_closable"),
    )
    async def close(
        self, request: Request[Any, Any, Any], principal: NamedDependency[Principal], bill_id: FromPath[str]
    ) -> BillAnswer:
        return await _payments(request).close(principal.owner_id, bill_id)

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
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        bill_id: FromPath[str],
        data: JSONBody[NewRefund],
    ) -> Response[RefundAnswer]:
        made = await _payments(request).refund(principal.owner_id, bill_id, data)
        return Response(made.refund, status_code=201 if made.created else 200)

    @get(
        "/{bill_id:str}/notifications",
        dependencies=MERCHANT,
        summary="Every delivery attempt of the bill's callbacks: when, and the HTTP status or error",
        responses=problems(*SIGNED_PROBLEMS, "not_found"),
    )
    async def notifications(
        self, request: Request[Any, Any, Any], principal: NamedDependency[Principal], bill_id: FromPath[str]
    ) -> Notifications:
        items = await _payments(request).notifications(principal.owner_id, bill_id)
        return Notifications(bill_id=bill_id, items=items)

    @get(
        "/{bill_id:str}/qr",
        dependencies=MERCHANT,
        summary="The pull-up link as a QR for the counter (Accept: image/png or image/svg+xml)",
        responses=problems(*SIGNED_PROBLEMS, "not_found", "not_acceptable"),
        media_type="image/png",
    )
    async def qr(
        self, request: Request[Any, Any, Any], principal: NamedDependency[Principal], bill_id: FromPath[str]
    ) -> Response[Any]:
        link = await _payments(request).link(principal.owner_id, bill_id)
        accept = request.headers.get("accept", "")
        if "image/svg+xml" in accept:
            return Response(qr.svg(link), media_type="image/svg+xml")
        if "image/png" in accept or "image/*" in accept or "*/*" in accept or not accept:
            return Response(qr.png(link), media_type="image/png")
        raise Refusal("not_acceptable", "the QR comes as image/png or image/svg+xml")


_CSV_COLUMNS = ["kind", "id", "out_no", "bill_id", "item_code", "amount_fen", "status", "at"]


def statement_csv(statement: Statement) -> str:
    """One line per paid bill and per refund, then the totals."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(_CSV_COLUMNS)
    for bill in statement.bills:
        writer.writerow(
            [
                "bill",
                bill.bill_id,
                bill.out_bill_no,
                bill.bill_id,
                bill.item_code,
                bill.amount_fen,
                "paid",
                bill.paid_at,
            ]
        )
    for refund in statement.refunds:
        writer.writerow(
            [
                "refund",
                refund.refund_id,
                refund.out_refund_no,
                refund.bill_id,
                "",
                -refund.amount_fen,
                refund.status,
                refund.created_at,
            ]
        )
    totals = statement.totals
    writer.writerow(["total_paid", "", "", "", "", totals.paid_fen, totals.paid_count, statement.date])
    writer.writerow(["total_refunded", "", "", "", "", -totals.refunded_fen, totals.refund_count, statement.date])
    writer.writerow(["net", "", "", "", "", totals.net_fen, "", statement.date])
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
        self, request: Request[Any, Any, Any], principal: NamedDependency[Principal], day: FromPath[str]
    ) -> Response[Any]:
        statement = await _payments(request).statement(principal.owner_id, statement_day(day))
        if "text/csv" in request.headers.get("accept", ""):
            return Response(
                statement_csv(statement),
                media_type="text/csv; charset=utf-8",
                headers={"Content-Disposition": f'attachment; filename="statement-{statement.date}.csv"'},
            )
        return Response(statement, media_type=MediaType.JSON)
