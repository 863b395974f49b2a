"""HTTP for disbursement batches: merchants upload and follow them, operators decide, holders see what came in."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, FromQuery, JSONBody, SkipValidation

from ecard.disbursements.models import BatchAnswer, Decision, HolderPayouts, RowPage
from ecard.disbursements.service import Disbursements
from ecard.disbursements.upload import csv_header, csv_rows, json_batch
from ecard.kit.edge import SIGNED_PROBLEMS, OperatorSessions, SignedRequests, operator_session, signed_by
from ecard.kit.principal import ClientKind, Principal
from ecard.kit.problems import problems
from ecard.kit.refusal import Refusal

MERCHANT = {"principal": signed_by(ClientKind.MERCHANT)}
# 100,000 rows of CSV or JSON, with room to spare
MAX_BODY = 32 * 1024 * 1024


async def _viewer(
    request: Request[Any, Any, Any],
    authenticator: NamedDependency[SkipValidation[SignedRequests]],
    operator_sessions: NamedDependency[SkipValidation[OperatorSessions]],
) -> str | None:
    """The merchant who signed the request, or None for an operator's session (who may see every batch)."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        await operator_sessions.operator_for(token.strip())
        return None
    body = await request.body()
    raw_path = request.scope.get("raw_path")
    path = raw_path.decode("latin-1") if isinstance(raw_path, bytes) else request.url.path
    query = request.scope.get("query_string", b"").decode("latin-1")
    principal = await authenticator.authenticate(
        request.method, path, query, request.headers, body, frozenset({ClientKind.MERCHANT})
    )
    return principal.owner_id


VIEWER = {"viewer": Provide(_viewer)}


class DisbursementController(Controller):
    path = "/v1/disbursements"
    tags = ["disbursements"]  # noqa: RUF012

    @post(
        "/",
        status_code=201,
        dependencies=MERCHANT,
        request_max_body_size=MAX_BODY,
        summary="Upload a batch of payouts as JSON, or as text/csv with the batch's fields in the query"
        " (idempotent on out_batch_no)",
        responses=problems(
            *SIGNED_PROBLEMS, "forbidden", "item_unknown", "merchant_not_entitled", "idempotency_conflict"
        ),
    )
    async def create(
        self,
        request: Request[Any, Any, Any],
        disbursements: NamedDependency[Disbursements],
        principal: NamedDependency[Principal],
        out_batch_no: FromQuery[str | None] = None,
        item_code: FromQuery[str | None] = None,
        description: FromQuery[str | None] = None,
        notify_url: FromQuery[str | None] = None,
    ) -> Response[BatchAnswer]:
        body = await request.body()
        kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if kind == "text/csv":
            header = csv_header(out_batch_no or "", item_code or "", description or "", notify_url or "")
            made = await disbursements.create(principal.owner_id, header, csv_rows(body))
        elif kind in {"application/json", ""}:
            header, rows = json_batch(body)
            made = await disbursements.create(principal.owner_id, header, rows)
        else:
            raise Refusal("invalid_request", "the body is application/json or text/csv", extra={"fields": []})
        return Response(made.batch, status_code=201 if made.created else 200)

    @get(
        "/{batch_id:str}",
        dependencies=VIEWER,
        summary="A batch: status, counts and totals (its merchant, signed, or an operator's session)",
        responses=problems(*SIGNED_PROBLEMS, "not_found", "unauthorized"),
    )
    async def one(
        self,
        disbursements: NamedDependency[Disbursements],
        viewer: NamedDependency[str | None],
        batch_id: FromPath[str],
    ) -> BatchAnswer:
        return await disbursements.get(viewer, batch_id)

    @get(
        "/{batch_id:str}/rows",
        dependencies=VIEWER,
        summary="A batch's rows, by status, in pages (no name and no ID number)",
        responses=problems(*SIGNED_PROBLEMS, "not_found", "unauthorized"),
    )
    async def rows(
        self,
        disbursements: NamedDependency[Disbursements],
        viewer: NamedDependency[str | None],
        batch_id: FromPath[str],
        status: FromQuery[str | None] = None,
        after: FromQuery[int] = 0,
        limit: FromQuery[int] = 1000,
    ) -> RowPage:
        return await disbursements.rows(viewer, batch_id, status, after, limit)


class DisbursementAdminController(Controller):
    path = "/v1/admin/disbursements"
    tags = ["disbursements"]  # noqa: RUF012
    dependencies = {"operator": operator_session}  # noqa: RUF012

    @post(
        "/{batch_id:str}/approve",
        status_code=200,
        summary="Approve a batch; above ECARD_DISBURSEMENT_DUAL_APPROVAL_FEN two different operators must",
        responses=problems("unauthorized", "not_found", "batch_not_approvable", "approval_duplicate"),
    )
    async def approve(
        self,
        disbursements: NamedDependency[Disbursements],
        operator: NamedDependency[str],
        batch_id: FromPath[str],
        data: JSONBody[Decision | None] = None,
    ) -> BatchAnswer:
        return await disbursements.approve(operator, batch_id, data.reason if data else "")

    @post(
        "/{batch_id:str}/reject",
        status_code=200,
        summary="Reject a batch awaiting approval (a reason is required); nothing is paid",
        responses=problems("unauthorized", "not_found", "batch_not_approvable", "invalid_request"),
    )
    async def reject(
        self,
        disbursements: NamedDependency[Disbursements],
        operator: NamedDependency[str],
        batch_id: FromPath[str],
        data: JSONBody[Decision],
    ) -> BatchAnswer:
        return await disbursements.reject(operator, batch_id, data.reason)


class HolderDisbursementController(Controller):
    path = "/v1/cards"
    tags = ["devices"]  # noqa: RUF012
    dependencies = {"principal": signed_by(ClientKind.DEVICE)}  # noqa: RUF012

    @get(
        "/{card_id:str}/disbursements",
        summary="What was paid into the card's account: payer, item, amount, memo, time",
        responses=problems(*SIGNED_PROBLEMS, "forbidden"),
    )
    async def payouts(
        self,
        disbursements: NamedDependency[Disbursements],
        principal: NamedDependency[Principal],
        card_id: FromPath[str],
    ) -> HolderPayouts:
        return HolderPayouts(items=await disbursements.for_holder(principal, card_id))
