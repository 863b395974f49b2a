"""The public catalog (where the card can be used, what each use discloses, its versions) and its operator edits."""

from __future__ import annotations

import hashlib
from datetime import date
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, put
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_304_NOT_MODIFIED

from ecard.catalog.models import CardMode, Function, Item, ItemFields, ItemList, SavedItem, VersionList
from ecard.catalog.service import Catalog
from ecard.kit.edge import operator_session
from ecard.kit.problems import problems


def _etag(version: int, *query: object) -> str:
    # The version changes with every change to any item, so it and the question asked name the answer exactly.
    digest = hashlib.sha256(repr(query).encode()).hexdigest()[:16]
    return f'"v{version}-{digest}"'


def _not_modified(request: Request[Any, Any, Any], etag: str) -> bool:
    """RFC 9110 If-None-Match, with the weak comparison GET asks for."""
    header = request.headers.get("if-none-match")
    if header is None:
        return False
    offered = {tag.strip().removeprefix("W/") for tag in header.split(",")}
    return "*" in offered or etag in offered


def _cached(request: Request[Any, Any, Any], etag: str, content: object) -> Response[Any]:
    # no-cache: a client may keep the answer but asks again with its ETag, so a change shows within a second
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if _not_modified(request, etag):
        return Response(content=None, status_code=HTTP_304_NOT_MODIFIED, headers=headers)
    return Response(content=content, status_code=HTTP_200_OK, headers=headers)


class CatalogController(Controller):
    path = "/v1/catalog"
    tags = ["catalog"]  # noqa: RUF012

    @get(
        "/items",
        summary="List the catalog items in force (ETag; If-None-Match answers 304)",
        responses=problems("invalid_request"),
    )
    async def list_items(
        self,
        request: Request[Any, Any, Any],
        catalog: NamedDependency[Catalog],
        region: FromQuery[str | None] = None,
        function: FromQuery[Function | None] = None,
        mode: FromQuery[CardMode | None] = None,
        at: FromQuery[date | None] = None,
    ) -> Response[ItemList]:
        day = at or catalog.today()
        version, items = await catalog.listing(day, region, function, mode)
        etag = _etag(version, "items", day.isoformat(), region, function, mode)
        return _cached(request, etag, ItemList(version=version, items=items))

    @get(
        "/items/{item_code:str}",
        summary="One catalog item, in force or not (ETag; If-None-Match answers 304)",
        responses=problems("item_unknown"),
    )
    async def one_item(
        self, request: Request[Any, Any, Any], catalog: NamedDependency[Catalog], item_code: FromPath[str]
    ) -> Response[Item]:
        version, item = await catalog.lookup(item_code)
        return _cached(request, _etag(version, "item", item_code), item)

    @get(
        "/versions",
        summary="The catalog's versions, newest first: who changed what, when (page with before=<version>)",
        responses=problems("invalid_request"),
    )
    async def versions(
        self,
        catalog: NamedDependency[Catalog],
        before: Annotated[int | None, QueryParameter(ge=1, le=2**31 - 1)] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
    ) -> VersionList:
        return VersionList(versions=await catalog.versions(before, limit))


class CatalogAdminController(Controller):
    path = "/v1/admin/catalog"
    tags = ["catalog"]  # noqa: RUF012
    dependencies = {"operator": operator_session}  # noqa: RUF012

    @put(
        "/items/{item_code:str}",
        summary="Create or replace a catalog item; each change makes a new catalog version (201 when created)",
        responses={
            HTTP_201_CREATED: ResponseSpec(data_container=SavedItem, description="The item was new"),
            **problems("unauthorized", "invalid_request"),
        },
    )
    async def put_item(
        self,
        catalog: NamedDependency[Catalog],
        operator: NamedDependency[str],
        item_code: FromPath[str],
        data: JSONBody[ItemFields],
    ) -> Response[SavedItem]:
        saved = await catalog.put(operator, item_code, data)
        return Response(
            SavedItem(item=saved.item, version=saved.version),
            status_code=HTTP_201_CREATED if saved.created else HTTP_200_OK,
        )
