"""HTTP for the risk desk: operators list risk events and resolve them."""

from __future__ import annotations

from typing import Literal

from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody

from ecard.kit.edge import operator_session
from ecard.kit.problems import problems
from ecard.risk.models import Resolution, RiskEvent, RiskEventList
from ecard.risk.service import RiskEvents


class RiskAdminController(Controller):
    path = "/v1/admin/risk/events"
    tags = ["operators"]  # noqa: RUF012
    dependencies = {"operator": operator_session}  # noqa: RUF012

    @get(
        "/",
        summary="Risk events, newest first (at most 200), filtered by kind, card and status",
        responses=problems("unauthorized", "invalid_request"),
    )
    async def events(
        self,
        risk: NamedDependency[RiskEvents],
        operator: NamedDependency[str],  # noqa: ARG002 - the session is the permission
        kind: FromQuery[str | None] = None,
        card_id: FromQuery[str | None] = None,
        status: FromQuery[Literal["open", "resolved"] | None] = None,
    ) -> RiskEventList:
        return RiskEventList(items=await risk.events(kind, card_id, status))

    @post(
        "/{event_id:str}/resolve",
        status_code=200,
        summary="Resolve a risk event as confirmed or a false positive (which reactivates a card it suspended)",
        responses=problems("unauthorized", "invalid_request", "risk_event_not_found", "risk_event_resolved"),
    )
    async def resolve(
        self,
        risk: NamedDependency[RiskEvents],
        operator: NamedDependency[str],
        event_id: FromPath[str],
        data: JSONBody[Resolution],
    ) -> RiskEvent:
        return await risk.resolve(operator, event_id, data.outcome, data.note)
