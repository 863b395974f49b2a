"""The public catalog: where the card can be used and what each use discloses."""

from __future__ import annotations

from datetime import date
from typing import Any

from litestar import Controller, Request, get
from litestar.params import FromPath, FromQuery

from ecard.catalog.models import Item, ItemList
from ecard.catalog.service import Catalog
from ecard.kit.clock import to_datetime
from ecard.kit.problems import Refusal, problems


class CatalogController(Controller):
    path = "/v1/catalog"
    tags = ["catalog"]  # noqa: RUF012

    @get("/items", summary="List catalog items", responses=problems("invalid_request"))
    async def list_items(
        self,
        request: Request[Any, Any, Any],
        region: FromQuery[str | None] = None,
        function: FromQuery[str | None] = None,
        mode: FromQuery[str | None] = None,
        at: FromQuery[date | None] = None,
    ) -> ItemList:
        catalog: Catalog = request.app.state.catalog
        day = at or to_datetime(request.app.state.clock.now()).date()
        items = [
            i
            for i in await catalog.items()
            if i.in_force(day)
            and (region is None or region in i.regions)
            and (function is None or function in i.functions)
            and (mode is None or mode in i.card_modes)
        ]
        return ItemList(version=1, items=items)

    @get("/items/{item_code:str}", summary="One catalog item", responses=problems("item_unknown"))
    async def one_item(self, request: Request[Any, Any, Any], item_code: FromPath[str]) -> Item:
        catalog: Catalog = request.app.state.catalog
        for item in await catalog.items():
            if item.item_code == item_code:
                return item
        raise Refusal("item_unknown", "no catalog item has this code")
