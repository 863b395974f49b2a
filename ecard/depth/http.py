"""Operator HTTP for depth of use: recording scenes and beneficiaries, and the report as JSON or CSV."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, get, put
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, JSONBody, QueryParameter

from ecard.depth.models import Beneficiaries, DepthReport, ItemDepth, Payouts, SceneAnswer, SceneCount
from ecard.depth.service import Depth
from ecard.kit import csvsafe
from ecard.kit.edge import operator_session
from ecard.kit.problems import problems

CSV = "text/csv"
JSON = "application/json"

CSV_COLUMNS = (
    "item_code",
    "name",
    "functions",
    "scenes",
    "accepting_scenes",
    "share",
    "scenes_by_district",
    "accepting_by_district",
    "beneficiaries_year",
    "beneficiaries",
    "paid_by_card",
    "paid_share",
    "identity_level",
    "disbursement_level",
    "payment_level",
    "level",
    "target",
    "on_track",
    "note",
    "beneficiaries_source",
)


def _pairs(counts: dict[str, int]) -> str:
    return ";".join(f"{district}={n}" for district, n in counts.items())


def _row(item: ItemDepth) -> tuple[object, ...]:
    paid = item.beneficiaries
    return (
        item.item_code,
        item.name,
        ";".join(item.functions),
        item.scenes.total,
        item.accepting_scenes.total,
        item.share,
        _pairs(item.scenes.by_district),
        _pairs(item.accepting_scenes.by_district),
        paid.year if paid else None,
        paid.beneficiaries if paid else None,
        paid.paid_by_card if paid else None,
        paid.share if paid else None,
        item.levels.get("identity"),
        item.levels.get("disbursement"),
        item.levels.get("payment"),
        item.level,
        item.target,
        item.on_track,
        item.note,
        paid.source if paid else None,
    )


def as_csv(report: DepthReport) -> str:
    """The report as one header row and one row per item, for the office's spreadsheets (cells made safe)."""
    return csvsafe.write(CSV_COLUMNS, map(_row, report.items))


class DepthController(Controller):
    path = "/v1/admin/depth"
    tags = ["operators"]  # noqa: RUF012
    dependencies = {"operator": operator_session}  # noqa: RUF012

    @put(
        "/scenes/{item_code:str}",
        summary="Record how many service scenes an item has in a district",
        responses=problems("unauthorized", "invalid_request", "item_unknown"),
    )
    async def set_scenes(
        self,
        depth: NamedDependency[Depth],
        operator: NamedDependency[str],
        item_code: FromPath[str],
        data: JSONBody[SceneCount],
    ) -> SceneAnswer:
        return await depth.set_scenes(operator, item_code, data.district, data.scenes)

    @put(
        "/beneficiaries/{item_code:str}",
        summary="Record a disbursement item's beneficiaries in a year, and how many the card's account paid",
        responses=problems("unauthorized", "invalid_request", "item_unknown"),
    )
    async def set_beneficiaries(
        self,
        depth: NamedDependency[Depth],
        operator: NamedDependency[str],
        item_code: FromPath[str],
        data: JSONBody[Beneficiaries],
    ) -> Payouts:
        return await depth.set_beneficiaries(operator, item_code, data.year, data.beneficiaries, data.paid_by_card)

    @get(
        "/",
        summary="Depth of use per catalog item in force (JSON, or CSV with Accept: text/csv)",
        responses={
            # the handler answers a Response (JSON or CSV), so the JSON shape is stated here
            200: ResponseSpec(
                data_container=DepthReport,
                description="The report; with `Accept: text/csv`, the same as CSV: a header row, one row per item",
            ),
            **problems("unauthorized", "invalid_request"),
        },
    )
    async def report(
        self,
        request: Request[Any, Any, Any],
        depth: NamedDependency[Depth],
        operator: NamedDependency[str],  # noqa: ARG002 - its presence is the operator guard
        day: Annotated[date | None, QueryParameter(name="date")] = None,
    ) -> Response[Any]:
        report = await depth.report(day)
        if request.accept.best_match([JSON, CSV], default=JSON) == CSV:
            return Response(
                content=as_csv(report).encode(),
                media_type=f"{CSV}; charset=utf-8; header=present",
                headers={"Content-Disposition": f'attachment; filename="depth-{report.date.isoformat()}.csv"'},
            )
        return Response(content=msgspec.to_builtins(report), media_type=JSON)
