"""API.md, "Catalog (应用事项清单)": the public catalog, an operator's edits, versions and venues."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

import pytest

from ecard.kit.clock import to_datetime
from tests.contract.support import Integrator, problem_of
from tests.support import World

ITEM_FIELDS = {
    "item_code",
    "name",
    "domain",
    "functions",
    "card_modes",
    "regions",
    "discloses",
    "effective_from",
    "effective_to",
}


async def test_the_seeded_items_are_wl_001_to_wl_044(api: Integrator) -> None:
    """Item codes are those of the `item_code` column (`wl-001` ... `wl-044`; the plan's support rows
    `wl-045`..`wl-047` are not card uses). The service seeds that list on first start."""
    answer = await api.client.get("/v1/catalog/items")

    codes = [item["item_code"] for item in answer.json()["items"]]
    assert codes == [f"wl-{n:03d}" for n in range(1, 45)]


async def test_get_catalog_items_answers_the_version_and_items_with_their_fields(api: Integrator) -> None:
    """`GET /v1/catalog/items` (public) → 200 `{"version","items":[{"item_code","name","domain","functions",
    "card_modes","regions","discloses","effective_from","effective_to"}]}`."""
    answer = await api.client.get("/v1/catalog/items")

    assert answer.status_code == 200, answer.text
    assert isinstance(answer.json()["version"], int)
    for item in answer.json()["items"]:
        assert item.keys() >= ITEM_FIELDS


@pytest.mark.parametrize(
    ("query", "holds"),
    [
        ("region=sc", lambda i: "sc" in i["regions"]),
        ("function=identity", lambda i: "identity" in i["functions"]),
        ("function=disbursement", lambda i: "disbursement" in i["functions"]),
        ("function=payment", lambda i: "payment" in i["functions"]),
        ("mode=physical", lambda i: "physical" in i["card_modes"]),
        ("mode=electronic", lambda i: "electronic" in i["card_modes"]),
        ("at=2025-06-01", lambda i: i["effective_from"] <= "2025-06-01"),
    ],
)
async def test_get_catalog_items_filters(api: Integrator, query: str, holds: Callable[[dict[str, Any]], bool]) -> None:
    """`?region=&function=identity|disbursement|payment&mode=physical|electronic&at=<date>`."""
    everything = (await api.client.get("/v1/catalog/items")).json()["items"]

    answer = await api.client.get(f"/v1/catalog/items?{query}")

    assert answer.status_code == 200, answer.text
    expected = [i["item_code"] for i in everything if holds(i)]
    assert [i["item_code"] for i in answer.json()["items"]] == expected
    assert len(expected) > 0


async def test_get_catalog_item_answers_the_item_or_item_unknown(api: Integrator) -> None:
    """`GET /v1/catalog/items/{item_code}` (public) → 200 the item, 404 `item_unknown`."""
    found = await api.client.get("/v1/catalog/items/wl-030")
    missing = await api.client.get("/v1/catalog/items/wl-045")

    assert found.status_code == 200, found.text
    assert found.json()["item_code"] == "wl-030"
    assert found.json().keys() >= ITEM_FIELDS
    assert problem_of(missing) == (404, "item_unknown")


async def test_put_admin_catalog_item_takes_the_item_as_get_answers_it_back_changed(api: Integrator) -> None:
    """`PUT /v1/admin/catalog/items/{item_code}` (operator) the item's fields (the item as `GET` answers it may be
    sent back changed) → 200; every change makes a new catalog version."""
    before = (await api.client.get("/v1/catalog/items")).json()["version"]
    item = (await api.client.get("/v1/catalog/items/wl-030")).json()

    answer = await api.admin("PUT", "/v1/admin/catalog/items/wl-030", {**item, "discloses": ["pseudonym"]})

    assert answer.status_code == 200, answer.text
    after = (await api.client.get("/v1/catalog/items")).json()["version"]
    assert after == before + 1
    assert (await api.client.get("/v1/catalog/items/wl-030")).json()["discloses"] == ["pseudonym"]


async def test_put_admin_catalog_item_with_another_item_code_is_400(api: Integrator) -> None:
    """... an `item_code` other than the path's is 400."""
    item = (await api.client.get("/v1/catalog/items/wl-030")).json()

    answer = await api.admin("PUT", "/v1/admin/catalog/items/wl-031", item)

    assert problem_of(answer) == (400, "invalid_request")
    assert answer.json()["fields"] == ["item_code"]


async def test_an_item_with_a_future_effective_from_is_not_yet_usable(world: World, api: Integrator) -> None:
    """An item with a future `effective_from` is not yet usable (`item_unknown` at verification until then)."""
    today = to_datetime(world.clock.now()).date()
    item = (await api.client.get("/v1/catalog/items/wl-031")).json()
    later = {**item, "effective_from": (today + timedelta(days=10)).isoformat()}
    assert (await api.admin("PUT", "/v1/admin/catalog/items/wl-031", later)).status_code == 200
    phone = await api.phone()
    museum = await api.merchant(["wl-030"], name="武隆博物馆")
    entitled = await api.admin(
        "PUT", f"/v1/admin/merchants/{museum.ids['merchant_id']}/items", {"items": ["wl-030", "wl-031"]}
    )
    assert entitled.status_code == 200, entitled.text

    assert problem_of(await api.verify(museum, await api.code(phone), "wl-031")) == (404, "item_unknown")
    world.clock.advance(10 * 86_400)
    assert (await api.verify(museum, await api.code(phone), "wl-031")).status_code == 200


async def test_get_catalog_versions_lists_the_versions_with_dates_and_changes(api: Integrator) -> None:
    """`GET /v1/catalog/versions` (public) → the versions with their dates and changes."""
    item = (await api.client.get("/v1/catalog/items/wl-030")).json()
    await api.admin("PUT", "/v1/admin/catalog/items/wl-030", {**item, "name": "图书馆借阅"})

    answer = await api.client.get("/v1/catalog/versions")

    assert answer.status_code == 200, answer.text
    newest, seeded = answer.json()["versions"]
    assert date.fromisoformat(newest["created_at"][:10])
    assert newest["changes"] == [
        {"item_code": "wl-030", "fields": {"name": {"old": item["name"], "new": "图书馆借阅"}}}
    ]
    assert len(seeded["changes"]) == 44


async def test_get_venues_answers_the_merchants_that_accept_the_card(api: Integrator) -> None:
    """`GET /v1/venues` (public) `?item_code=&region=` → merchants and places that accept the card."""
    library = await api.merchant(["wl-030"], name="武隆区图书馆")
    await api.merchant(["wl-011"], name="武隆仙女山酒店")

    for_library = await api.client.get("/v1/venues?item_code=wl-030&region=cq")
    everywhere = await api.client.get("/v1/venues")

    assert for_library.status_code == 200, for_library.text
    assert [v["merchant_id"] for v in for_library.json()["venues"]] == [library.ids["merchant_id"]]
    assert {v["merchant_name"] for v in everywhere.json()["venues"]} == {"武隆区图书馆", "武隆仙女山酒店"}
