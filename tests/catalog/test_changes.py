"""Operators change items through PUT: each change is a version (who, when, what), and verification follows it."""

from __future__ import annotations

import asyncio
from datetime import date, datetime, timedelta
from typing import Any

import pytest

from ecard.catalog import Catalog
from ecard.catalog.service import REFRESH_S
from ecard.kit.clock import to_datetime
from tests.catalog.support import fields_of, new_item, versions
from tests.support import World, problem


async def operator_id(world: World) -> str:
    found: str = await world.app.state.operators.operator_for(await world.operator_token())
    return found


async def test_the_seeded_catalog_is_version_1_made_by_the_seed(world: World) -> None:
    [first] = await versions(world)

    assert first["version"] == 1
    assert first["actor"] == "seed"
    assert len(first["changes"]) == 44
    library = next(c for c in first["changes"] if c["item_code"] == "wl-030")
    assert library["fields"]["discloses"] == {"old": None, "new": ["pseudonym", "name_masked"]}
    assert "effective_to" not in library["fields"]


async def test_each_change_is_a_new_version_with_who_when_and_what(world: World) -> None:
    body = await fields_of(world, "wl-030")
    who = await operator_id(world)
    # the service's clock, not the host's, says when (the operator logged in first: TOTP follows the host's)
    world.clock.advance(600)

    first = await world.admin("PUT", "/v1/admin/catalog/items/wl-030", {**body, "discloses": ["pseudonym"]})
    second = await world.admin(
        "PUT", "/v1/admin/catalog/items/wl-030", {**body, "discloses": ["pseudonym"], "name": "图书馆借阅"}
    )

    assert first.status_code == 200, first.text
    assert first.json()["version"] == 2
    assert first.json()["item"]["discloses"] == ["pseudonym"]
    assert second.json()["version"] == 3
    newest, middle, oldest = await versions(world)
    assert [v["version"] for v in (newest, middle, oldest)] == [3, 2, 1]
    assert newest["actor"] == middle["actor"] == who
    made = datetime.fromisoformat(middle["created_at"])
    assert abs(made.timestamp() - world.clock.now()) < 5
    assert middle["changes"] == [
        {
            "item_code": "wl-030",
            "fields": {"discloses": {"old": ["pseudonym", "name_masked"], "new": ["pseudonym"]}},
        }
    ]
    assert newest["changes"] == [
        {"item_code": "wl-030", "fields": {"name": {"old": body["name"], "new": "图书馆借阅"}}}
    ]
    catalog = await world.client.get("/v1/catalog/items")
    assert catalog.json()["version"] == 3


async def test_the_item_as_get_answers_it_is_accepted_back_unchanged(world: World) -> None:
    for code in ("wl-030", "wl-005", "wl-043"):
        as_got = (await world.client.get(f"/v1/catalog/items/{code}")).json()

        answer = await world.admin("PUT", f"/v1/admin/catalog/items/{code}", as_got)

        assert answer.status_code == 200, answer.text
        assert answer.json()["item"] == as_got
    assert len(await versions(world)) == 1


async def test_the_item_as_get_answers_it_may_come_back_changed(world: World) -> None:
    as_got = (await world.client.get("/v1/catalog/items/wl-030")).json()
    listing = (await world.client.get("/v1/catalog/items")).json()["items"]
    as_listed = next(i for i in listing if i["item_code"] == "wl-031")

    changed = await world.admin("PUT", "/v1/admin/catalog/items/wl-030", {**as_got, "discloses": ["pseudonym"]})
    listed = await world.admin("PUT", "/v1/admin/catalog/items/wl-031", {**as_listed, "name": "博物馆参观"})

    assert changed.status_code == 200, changed.text
    assert changed.json()["item"] == {**as_got, "discloses": ["pseudonym"]}
    assert listed.status_code == 200, listed.text
    assert listed.json()["item"]["name"] == "博物馆参观"
    assert [v["version"] for v in await versions(world)] == [3, 2, 1]


async def test_an_item_code_other_than_the_paths_is_refused(world: World) -> None:
    as_got = (await world.client.get("/v1/catalog/items/wl-030")).json()

    moved = await world.admin("PUT", "/v1/admin/catalog/items/wl-031", {**as_got, "discloses": ["pseudonym"]})
    new = await world.admin("PUT", "/v1/admin/catalog/items/wl-900", {**new_item(), "item_code": "wl-901"})
    wrong_type = await world.admin("PUT", "/v1/admin/catalog/items/wl-030", {**as_got, "item_code": 30})

    for answer in (moved, new, wrong_type):
        assert problem(answer) == (400, "invalid_request")
        assert answer.json()["fields"] == ["item_code"]
    assert len(await versions(world)) == 1
    assert (await world.client.get("/v1/catalog/items/wl-031")).json()["discloses"] == ["pseudonym", "name_masked"]
    assert problem(await world.client.get("/v1/catalog/items/wl-900")) == (404, "item_unknown")


async def test_a_put_that_changes_nothing_makes_no_version(world: World) -> None:
    body = await fields_of(world, "wl-030")

    answer = await world.admin("PUT", "/v1/admin/catalog/items/wl-030", body)

    assert answer.status_code == 200, answer.text
    assert answer.json()["version"] == 1
    assert len(await versions(world)) == 1


async def test_a_new_item_is_created_with_201_and_shows_every_field_as_new(world: World) -> None:
    answer = await world.admin(
        "PUT", "/v1/admin/catalog/items/wl-048", new_item(depth_targets={"2025_end": 1, "2027_end": 2})
    )

    assert answer.status_code == 201, answer.text
    assert answer.json()["version"] == 2
    assert answer.json()["item"]["depth_targets"] == {"2025_end": 1, "2027_end": 2}
    [change] = (await versions(world))[0]["changes"]
    assert change["item_code"] == "wl-048"
    assert change["fields"]["name"] == {"old": None, "new": "武隆喀斯特景区年卡"}
    assert change["fields"]["depth_targets"] == {"old": None, "new": {"2025_end": 1, "2027_end": 2}}
    listed = (await world.client.get("/v1/catalog/items")).json()["items"]
    assert len(listed) == 45
    depth = {item.item_code: item.depth_targets for item in await world.app.state.catalog.items()}
    assert depth["wl-048"] == {"2025_end": 1, "2027_end": 2}


async def test_depth_targets_left_out_are_kept_and_sets_are_stored_in_one_order(world: World) -> None:
    body = await fields_of(world, "wl-005")
    targets = body.pop("depth_targets")
    assert targets

    answer = await world.admin(
        "PUT",
        "/v1/admin/catalog/items/wl-005",
        {**body, "functions": ["disbursement", "identity", "identity"], "regions": ["sc", "cq"]},
    )

    assert answer.status_code == 200, answer.text
    item = answer.json()["item"]
    assert item["functions"] == ["identity", "disbursement"]
    assert item["regions"] == ["cq", "sc"]
    assert item["depth_targets"] == targets
    assert set((await versions(world))[0]["changes"][0]["fields"]) == {"regions"}


def _invalid_bodies() -> list[tuple[str, dict[str, Any], str]]:
    return [
        ("wl-030", new_item(functions=[]), "functions"),
        ("wl-030", new_item(functions=["identity", "teleport"]), "functions"),
        ("wl-030", new_item(card_modes=[]), "card_modes"),
        ("wl-030", new_item(card_modes=["paper"]), "card_modes"),
        ("wl-030", new_item(discloses=["pseudonym", "phone"]), "discloses"),
        ("wl-030", new_item(regions=[]), "regions"),
        ("wl-030", new_item(regions=["CQ"]), "regions"),
        ("wl-030", new_item(effective_from="2026-01-01", effective_to="2025-12-31"), "effective_to"),
        ("wl-030", new_item(effective_from="not a date"), "effective_from"),
        ("wl-030", new_item(name="  "), "name"),
        ("wl-030", new_item(domain="Culture & Tourism"), "domain"),
        ("wl-030", new_item(depth_targets={"2030_end": 1}), "depth_targets"),
        ("wl-030", new_item(depth_targets={"2025_end": 4}), "depth_targets"),
        ("wl-030", new_item(colour="red"), "colour"),
        ("wl-030", {k: v for k, v in new_item().items() if k != "discloses"}, "discloses"),
        ("wl-030", new_item(functions="identity"), "functions"),
        ("wl_030", new_item(), "item_code"),
        ("x" * 33, new_item(), "item_code"),
    ]


@pytest.mark.parametrize(("code", "body", "field"), _invalid_bodies())
async def test_an_invalid_item_is_refused_naming_the_field(
    world: World, code: str, body: dict[str, Any], field: str
) -> None:
    answer = await world.admin("PUT", f"/v1/admin/catalog/items/{code}", body)

    assert problem(answer) == (400, "invalid_request")
    assert field in answer.json()["fields"]
    assert len(await versions(world)) == 1
    assert (await world.client.get("/v1/catalog/items/wl-030")).json()["name"] != new_item()["name"]


async def test_only_an_operator_may_change_the_catalog(world: World) -> None:
    body = await fields_of(world, "wl-030")

    anonymous = await world.client.put("/v1/admin/catalog/items/wl-030", json={**body, "discloses": ["pseudonym"]})
    forged = await world.client.put(
        "/v1/admin/catalog/items/wl-030",
        json={**body, "discloses": ["pseudonym"]},
        headers={"Authorization": "Bearer not-a-session"},
    )

    assert problem(anonymous) == (401, "unauthorized")
    assert problem(forged)[0] == 401
    assert (await fields_of(world, "wl-030"))["discloses"] == ["pseudonym", "name_masked"]
    assert len(await versions(world)) == 1


async def test_a_change_of_disclosure_applies_to_the_next_verification(world: World) -> None:
    library = await world.merchant(["wl-030"])
    device = await world.device("张小三")
    before = await world.verify(library, await world.code(device), "wl-030")
    assert set(before.json()["card"]) == {"pseudonym", "name_masked", "region"}

    body = await fields_of(world, "wl-030")
    put = await world.admin("PUT", "/v1/admin/catalog/items/wl-030", {**body, "discloses": ["pseudonym", "name"]})
    assert put.status_code == 200, put.text

    after = await world.verify(library, await world.code(device), "wl-030")
    assert after.status_code == 200, after.text
    assert set(after.json()["card"]) == {"pseudonym", "name", "region"}
    assert after.json()["card"]["name"] == "张小三"


async def test_an_item_not_yet_in_force_is_unknown_at_verification_until_its_day(world: World) -> None:
    start = to_datetime(world.clock.now()).date() + timedelta(days=10)
    put = await world.admin(
        "PUT", "/v1/admin/catalog/items/wl-950", new_item(effective_from=start.isoformat(), discloses=["pseudonym"])
    )
    assert put.status_code == 201, put.text
    # merchants may be entitled ahead of the day
    museum = await world.merchant(["wl-950"])
    device = await world.device()

    refused = await world.verify(museum, await world.code(device), "wl-950")
    assert problem(refused) == (404, "item_unknown")

    world.clock.advance(9 * 86400)
    assert problem(await world.verify(museum, await world.code(device), "wl-950")) == (404, "item_unknown")

    world.clock.advance(86400)
    accepted = await world.verify(museum, await world.code(device), "wl-950")
    assert accepted.status_code == 200, accepted.text
    assert set(accepted.json()["card"]) == {"pseudonym", "region"}


async def test_an_item_whose_end_has_passed_is_unknown_at_verification(world: World) -> None:
    museum = await world.merchant(["wl-030"])
    device = await world.device()
    today = to_datetime(world.clock.now()).date()
    body = await fields_of(world, "wl-030")
    put = await world.admin("PUT", "/v1/admin/catalog/items/wl-030", {**body, "effective_to": today.isoformat()})
    assert put.status_code == 200, put.text

    assert (await world.verify(museum, await world.code(device), "wl-030")).status_code == 200
    world.clock.advance(86400)
    assert problem(await world.verify(museum, await world.code(device), "wl-030")) == (404, "item_unknown")


async def test_versions_come_newest_first_a_page_at_a_time(world: World) -> None:
    for n in range(3):
        answer = await world.admin("PUT", f"/v1/admin/catalog/items/wl-90{n}", new_item())
        assert answer.status_code == 201, answer.text

    page = await world.client.get("/v1/catalog/versions?limit=2")
    older = await world.client.get("/v1/catalog/versions?limit=2&before=3")

    assert [v["version"] for v in page.json()["versions"]] == [4, 3]
    assert [v["version"] for v in older.json()["versions"]] == [2, 1]
    assert problem(await world.client.get("/v1/catalog/versions?limit=0")) == (400, "invalid_request")
    # a version number beyond what the database counts in is bad input, not a failure of ours
    assert problem(await world.client.get("/v1/catalog/versions?before=16468489325394")) == (400, "invalid_request")


async def test_changes_made_at_once_get_a_version_each(world: World) -> None:
    await world.operator_token()

    answers = await asyncio.gather(
        *(world.admin("PUT", f"/v1/admin/catalog/items/wl-8{n:02d}", new_item()) for n in range(6))
    )

    assert sorted(a.json()["version"] for a in answers) == [2, 3, 4, 5, 6, 7]
    assert [v["version"] for v in await versions(world)] == [7, 6, 5, 4, 3, 2, 1]


class Ticks:
    """A monotonic clock for a worker's catalog copy that moves only when the test says."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_another_worker_follows_a_change_within_its_refresh_interval(world: World) -> None:
    ticks = Ticks()
    other = Catalog(world.app.state.pool, monotonic=ticks)
    assert (await other.item("wl-030", date(2025, 6, 1))) is not None
    body = await fields_of(world, "wl-030")

    await world.admin("PUT", "/v1/admin/catalog/items/wl-030", {**body, "discloses": ["pseudonym"]})

    # the worker that made the change follows at once; another one serves its copy until REFRESH_S has passed
    assert (await world.app.state.catalog.item("wl-030", date(2025, 6, 1))).discloses == ("pseudonym",)
    stale = await other.item("wl-030", date(2025, 6, 1))
    assert stale is not None
    assert stale.discloses == ("pseudonym", "name_masked")
    ticks.now += REFRESH_S
    fresh = await other.item("wl-030", date(2025, 6, 1))
    assert fresh is not None
    assert fresh.discloses == ("pseudonym",)
