"""HTTP for complaints: filing and reading them (the holder's device or the public), and the operators' desk."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, HeaderParameter, JSONBody

from ecard.complaints.models import (
    CardComplaints,
    ComplaintCase,
    ComplaintFiled,
    ComplaintList,
    ComplaintView,
    NewComplaint,
    NewReply,
    ReplyAnswer,
    StatusFilter,
)
from ecard.complaints.service import Complaints
from ecard.kit.edge import SIGNED_PROBLEMS, operator_session, signed_by, signed_or_anonymous
from ecard.kit.principal import ClientKind, Principal
from ecard.kit.problems import problems
from ecard.operators import source_of

TRACKING_HEADER = "Ecard-Tracking-Code"


class ComplaintController(Controller):
    path = "/v1/complaints"
    tags = ["complaints"]  # noqa: RUF012
    dependencies = {"principal": signed_or_anonymous(ClientKind.DEVICE)}  # noqa: RUF012

    @post(
        "/",
        status_code=201,
        summary="File a complaint (投诉): signed by the holder's device, or unsigned with a contact",
        description=(
            "The answer's `tracking_code` is shown once: with it (header Ecard-Tracking-Code) or with the card's"
            " device the complainant reads the status and the replies. Unsigned filings are limited per source"
            " address, signed ones per card (429 with Retry-After). A `verification_id` or `bill_id` must be the"
            " holder's own and so needs the device; a `merchant_id` must be a merchant's."
        ),
        responses=problems(*SIGNED_PROBLEMS, "forbidden", "complaint_link_refused", "too_many_requests"),
    )
    async def file(
        self,
        request: Request[Any, Any, Any],
        complaints: NamedDependency[Complaints],
        principal: NamedDependency[Principal | None],
        data: JSONBody[NewComplaint],
    ) -> ComplaintFiled:
        source = source_of(request.client.host if request.client else None)
        return await complaints.file(data, principal, source)

    @get(
        "/{complaint_id:str}",
        summary="A complaint's status and replies, for the tracking code's holder or the card's device",
        responses=problems(*SIGNED_PROBLEMS, "unauthorized", "not_found"),
    )
    async def read(
        self,
        complaints: NamedDependency[Complaints],
        principal: NamedDependency[Principal | None],
        complaint_id: FromPath[str],
        tracking_code: Annotated[str | None, HeaderParameter(name=TRACKING_HEADER, max_length=64)] = None,
    ) -> ComplaintView:
        return await complaints.for_citizen(complaint_id, tracking_code, principal)


class CardComplaintController(Controller):
    path = "/v1/cards"
    tags = ["complaints"]  # noqa: RUF012
    dependencies = {"principal": signed_by(ClientKind.DEVICE)}  # noqa: RUF012

    @get(
        "/{card_id:str}/complaints",
        summary="The complaints filed from the card's devices, newest first (no text)",
        responses=problems(*SIGNED_PROBLEMS, "forbidden"),
    )
    async def of_card(
        self, complaints: NamedDependency[Complaints], principal: NamedDependency[Principal], card_id: FromPath[str]
    ) -> CardComplaints:
        return CardComplaints(items=await complaints.of_card(principal, card_id))


class ComplaintAdminController(Controller):
    path = "/v1/admin/complaints"
    tags = ["operators"]  # noqa: RUF012
    dependencies = {"operator": operator_session}  # noqa: RUF012

    @get(
        "/",
        summary="Complaints by due date; `overdue=true`: only those still open past it (no text)",
        responses=problems("unauthorized", "invalid_request"),
    )
    async def listed(
        self,
        complaints: NamedDependency[Complaints],
        operator: NamedDependency[str],  # noqa: ARG002 - its presence is the operator guard
        status: FromQuery[StatusFilter | None] = None,
        overdue: FromQuery[bool] = False,
    ) -> ComplaintList:
        return ComplaintList(items=await complaints.listed(status or None, overdue=overdue))

    @get(
        "/{complaint_id:str}",
        summary="One complaint with its text, contact and replies (the reading is audited)",
        responses=problems("unauthorized", "not_found"),
    )
    async def case(
        self, complaints: NamedDependency[Complaints], operator: NamedDependency[str], complaint_id: FromPath[str]
    ) -> ComplaintCase:
        return await complaints.case(operator, complaint_id)

    @post(
        "/{complaint_id:str}/replies",
        status_code=201,
        summary="Reply to a complaint, setting its status (accepted, resolved, rejected); audited",
        responses=problems("unauthorized", "invalid_request", "not_found", "complaint_closed"),
    )
    async def reply(
        self,
        complaints: NamedDependency[Complaints],
        operator: NamedDependency[str],
        complaint_id: FromPath[str],
        data: JSONBody[NewReply],
    ) -> ReplyAnswer:
        return await complaints.reply(operator, complaint_id, data)
