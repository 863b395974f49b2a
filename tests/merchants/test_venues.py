"""GET /v1/venues: where a citizen can use the card for an item (服务专区), public and read-only."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from ecard.kit.clock import to_datetime
from tests.support import World, problem


async def venues(world: World, **query: str) -> list[dict[str, Any]]:
    answer = await world.client.get("/v1/venues", params=query)
    assert answer.status_code == 200, answer.text
    found: list[dict[str, Any]] = answer.json()["venues"]
    return found


def where(found: list[dict[str, Any]]) -> set[tuple[str, str | None, str]]:
    return {(v["merchant_name"], v["terminal_id"], v["region"]) for v in found}


async def town(world: World) -> None:
    """A library with terminals in two districts, a museum without terminals, a hotel, and two that are not open."""
    library = await world.merchant(["wl-030", "wl-031"], name="图书馆")
    await world.terminal(library, "wl-gate", region="wulong")
    await world.terminal(library, "cq-gate", region="cq")
    await world.merchant(["wl-030"], name="博物馆", region="wulong")
    hotel = await world.merchant(["wl-011"], name="酒店")
    await world.terminal(hotel, "front-desk", region="wulong")
    closed = await world.merchant(["wl-030"], name="已停用的场馆")
    await world.admin("POST", f"/v1/admin/merchants/{closed.ids['merchant_id']}/status", {"status": "disabled"})
    idle = await world.merchant(["wl-030"], name="终端都停了的场馆")
    await world.terminal(idle, "only-gate")
    await world.admin(
        "POST", f"/v1/admin/merchants/{idle.ids['merchant_id']}/terminals/only-gate/status", {"status": "disabled"}
    )


async def test_venues_for_an_item_are_active_terminals_and_merchants_without_terminals(world: World) -> None:
    await town(world)

    found = await venues(world, item_code="wl-030")

    assert where(found) == {("图书馆", "wl-gate", "wulong"), ("图书馆", "cq-gate", "cq"), ("博物馆", None, "wulong")}
    gate = next(v for v in found if v["terminal_id"] == "wl-gate")
    assert gate["place"] == {
        "name": "wl-gate服务台",
        "address": "武隆区芙蓉路1号",
        "region": "wulong",
        "lat": 29.32,
        "lon": 107.76,
    }
    assert gate["items"] == ["wl-030", "wl-031"]
    assert gate["merchant_id"].startswith("mch_")
    museum = next(v for v in found if v["terminal_id"] is None)
    assert museum["place"] is None
    assert museum["items"] == ["wl-030"]


async def test_venues_are_filtered_by_region(world: World) -> None:
    await town(world)

    in_wulong = await venues(world, item_code="wl-030", region="wulong")
    in_cq = await venues(world, item_code="wl-030", region="cq")
    anywhere_in_wulong = await venues(world, region="wulong")
    nowhere = await venues(world, item_code="wl-030", region="sc")

    assert where(in_wulong) == {("图书馆", "wl-gate", "wulong"), ("博物馆", None, "wulong")}
    assert where(in_cq) == {("图书馆", "cq-gate", "cq")}
    assert where(anywhere_in_wulong) == {
        ("图书馆", "wl-gate", "wulong"),
        ("博物馆", None, "wulong"),
        ("酒店", "front-desk", "wulong"),
    }
    assert nowhere == []


async def test_without_filters_every_open_venue_is_listed(world: World) -> None:
    await town(world)

    found = await venues(world)

    assert {name for name, _, _ in where(found)} == {"图书馆", "博物馆", "酒店"}
    assert len(found) == 4


async def test_a_venue_follows_entitlement_changes(world: World) -> None:
    museum = await world.merchant(["wl-030"], name="博物馆")
    await world.admin("PUT", f"/v1/admin/merchants/{museum.ids['merchant_id']}/items", {"items": ["wl-031"]})

    assert await venues(world, item_code="wl-030") == []
    assert where(await venues(world, item_code="wl-031")) == {("博物馆", None, "cq")}


async def test_an_unknown_item_has_no_venues(world: World) -> None:
    answer = await world.client.get("/v1/venues", params={"item_code": "wl-999"})

    assert problem(answer) == (404, "item_unknown")


async def test_a_query_value_postgresql_cannot_hold_is_invalid(world: World) -> None:
    answer = await world.client.get("/v1/venues", params={"region": "wu\x00long"})

    assert problem(answer) == (400, "invalid_request")
    assert answer.json()["fields"] == ["region"]


async def test_only_items_in_force_today_are_shown(world: World) -> None:
    museum = await world.merchant(["wl-030", "wl-031"], name="博物馆")
    item = (await world.client.get("/v1/catalog/items/wl-031")).json()
    tomorrow = (to_datetime(world.clock.now()).date() + timedelta(days=1)).isoformat()
    fields = {k: v for k, v in item.items() if k != "item_code"} | {"effective_from": tomorrow}
    changed = await world.admin("PUT", "/v1/admin/catalog/items/wl-031", fields)
    assert changed.status_code == 200, changed.text

    found = await venues(world)
    not_yet = await world.client.get("/v1/venues", params={"item_code": "wl-031"})

    assert [(v["merchant_id"], v["items"]) for v in found] == [(museum.ids["merchant_id"], ["wl-030"])]
    assert problem(not_yet) == (404, "item_unknown")
