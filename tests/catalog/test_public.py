"""The public catalog: the 44 card uses, filters, one item, and ETags that answer 304."""

from __future__ import annotations

import pytest

from ecard.kit.clock import to_datetime
from tests.catalog.support import new_item
from tests.support import World, problem

API_FIELDS = {
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


async def test_the_catalog_lists_the_plans_44_card_uses_and_not_its_support_work(world: World) -> None:
    answer = await world.client.get("/v1/catalog/items")

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["version"] == 1
    codes = [item["item_code"] for item in body["items"]]
    assert codes == [f"wl-{n:03d}" for n in range(1, 45)]
    assert all(item.keys() >= API_FIELDS for item in body["items"])
    library = next(item for item in body["items"] if item["item_code"] == "wl-030")
    assert library["regions"] == ["cq", "sc"]
    assert library["discloses"] == ["pseudonym", "name_masked"]
    assert library["effective_from"] == "2025-01-01"
    assert library["effective_to"] is None


async def test_one_item_and_an_unknown_one(world: World) -> None:
    answer = await world.client.get("/v1/catalog/items/wl-001")
    assert answer.status_code == 200
    assert answer.json()["functions"] == ["identity", "disbursement", "payment"]
    assert answer.json()["depth_targets"] == {"2025_end": 3, "2025_start": 3, "2026_end": 3, "2027_end": 3}

    assert problem(await world.client.get("/v1/catalog/items/wl-045")) == (404, "item_unknown")
    assert problem(await world.client.get("/v1/catalog/items/wl-999")) == (404, "item_unknown")


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("region=sc", {"wl-013", "wl-029", "wl-030", "wl-031", "wl-032"}),
        ("function=identity&mode=physical&region=sc", {"wl-013", "wl-029", "wl-030", "wl-031", "wl-032"}),
        ("function=disbursement&mode=electronic", {"wl-001", "wl-002", "wl-003", "wl-004", "wl-005", "wl-044"}),
        ("mode=electronic&function=payment&region=sc", {"wl-029"}),
        ("region=gd", set()),
    ],
)
async def test_filters_narrow_the_list(world: World, query: str, expected: set[str]) -> None:
    answer = await world.client.get(f"/v1/catalog/items?{query}")

    assert answer.status_code == 200, answer.text
    assert {item["item_code"] for item in answer.json()["items"]} == expected


async def test_physical_only_items_are_left_out_of_the_electronic_list(world: World) -> None:
    electronic = (await world.client.get("/v1/catalog/items?mode=electronic")).json()["items"]
    physical = (await world.client.get("/v1/catalog/items?mode=physical")).json()["items"]

    assert all("electronic" in item["card_modes"] for item in electronic)
    assert "wl-018" not in {item["item_code"] for item in electronic}
    assert len(physical) == 42  # wl-010 and wl-044 are e-card only


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("function=teleport", "function"),
        ("mode=paper", "mode"),
        ("at=yesterday", "at"),
        ("at=2025-02-30", "at"),
        ("region=CQ", "region"),
        ("region=c%20q", "region"),
    ],
)
async def test_an_invalid_filter_is_refused(world: World, query: str, field: str) -> None:
    answer = await world.client.get(f"/v1/catalog/items?{query}")

    assert problem(answer) == (400, "invalid_request")
    assert field in answer.json()["fields"]


async def test_at_shows_the_catalog_of_another_day(world: World) -> None:
    today = to_datetime(world.clock.now()).date()
    later = today.replace(year=today.year + 1)
    put = await world.admin("PUT", "/v1/admin/catalog/items/wl-900", new_item(effective_from=later.isoformat()))
    assert put.status_code == 201, put.text

    def codes(answer_items: list[dict[str, str]]) -> set[str]:
        return {item["item_code"] for item in answer_items}

    now = (await world.client.get("/v1/catalog/items")).json()["items"]
    then = (await world.client.get(f"/v1/catalog/items?at={later.isoformat()}")).json()["items"]
    before_the_plan = (await world.client.get("/v1/catalog/items?at=2024-12-31")).json()["items"]

    assert "wl-900" not in codes(now)
    assert "wl-900" in codes(then)
    assert before_the_plan == []
    # the item itself is public before its day, with the day it comes into force
    answer = await world.client.get("/v1/catalog/items/wl-900")
    assert answer.json()["effective_from"] == later.isoformat()


async def test_the_list_has_an_etag_and_answers_304_while_nothing_changed(world: World) -> None:
    first = await world.client.get("/v1/catalog/items?region=sc")
    etag = first.headers["etag"]
    assert etag.startswith('"v1-')

    again = await world.client.get("/v1/catalog/items?region=sc", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    weak = await world.client.get("/v1/catalog/items?region=sc", headers={"If-None-Match": f'"x", W/{etag}'})
    assert weak.status_code == 304

    # another question has another tag
    other = await world.client.get("/v1/catalog/items?region=cq", headers={"If-None-Match": etag})
    assert other.status_code == 200
    assert other.headers["etag"] != etag

    await world.admin("PUT", "/v1/admin/catalog/items/wl-901", new_item(regions=["cq", "sc"]))
    changed = await world.client.get("/v1/catalog/items?region=sc", headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["etag"] != etag
    assert changed.json()["version"] == 2
    assert "wl-901" in {item["item_code"] for item in changed.json()["items"]}


async def test_one_item_has_an_etag_too(world: World) -> None:
    first = await world.client.get("/v1/catalog/items/wl-030")
    etag = first.headers["etag"]

    assert (await world.client.get("/v1/catalog/items/wl-030", headers={"If-None-Match": etag})).status_code == 304
    assert (await world.client.get("/v1/catalog/items/wl-031", headers={"If-None-Match": etag})).status_code == 200
    assert (await world.client.get("/v1/catalog/items/wl-030", headers={"If-None-Match": "*"})).status_code == 304
