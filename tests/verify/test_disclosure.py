"""What a verification discloses: exactly what the catalog item lists, per-merchant pseudonyms, the holder's history."""

from __future__ import annotations

from datetime import datetime

import pytest

from tests.support import Actor, World, problem


async def _card(world: World, merchant: Actor, device: Actor, item_code: str) -> dict[str, str]:
    answer = await world.verify(merchant, await world.code(device), item_code)
    assert answer.status_code == 200, answer.text
    card: dict[str, str] = answer.json()["card"]
    return card


async def test_a_library_learns_a_pseudonym_a_masked_name_and_the_region_only(world: World) -> None:
    library = await world.merchant(["wl-030"])
    device = await world.device("张小三")

    answer = await world.verify(library, await world.code(device), "wl-030")

    assert answer.status_code == 200, answer.text
    card = answer.json()["card"]
    assert set(card) == {"pseudonym", "name_masked", "region"}
    assert card["name_masked"] == "张*三"
    assert card["region"] == "cq"
    assert "张小三" not in answer.text
    assert device.ids["id_number"] not in answer.text
    assert device.ids["card_id"] not in answer.text


@pytest.mark.parametrize(
    ("name", "masked"),
    [("张小三", "张*三"), ("李四", "李*"), ("欧阳小明", "欧**明"), ("司马相如君", "司***君")],
)
async def test_the_masked_name_keeps_only_the_first_and_last_characters(world: World, name: str, masked: str) -> None:
    library = await world.merchant(["wl-030"])
    device = await world.device(name)

    assert (await _card(world, library, device, "wl-030"))["name_masked"] == masked


async def test_a_hotel_registering_guests_learns_the_full_name_and_id_number(world: World) -> None:
    hotel = await world.merchant(["wl-011"], name="武隆仙女山酒店")
    device = await world.device("李四")

    card = await _card(world, hotel, device, "wl-011")

    assert set(card) == {"pseudonym", "name", "id_number", "region"}
    assert card["name"] == "李四"
    assert card["id_number"] == device.ids["id_number"]
    assert card["region"] == "cq"


async def test_a_payment_item_learns_the_pseudonym_and_region_only(world: World) -> None:
    school = await world.merchant(["wl-008"], name="武隆中学")
    device = await world.device("张小三")

    answer = await world.verify(school, await world.code(device), "wl-008")

    assert answer.status_code == 200, answer.text
    assert set(answer.json()["card"]) == {"pseudonym", "region"}
    assert "张" not in answer.text
    assert device.ids["id_number"] not in answer.text


async def test_the_pseudonym_is_stable_at_one_merchant_and_differs_across_merchants_and_holders(
    world: World,
) -> None:
    library = await world.merchant(["wl-030", "wl-011"])
    museum = await world.merchant(["wl-030"], name="武隆博物馆")
    zhang = await world.device("张小三")
    li = await world.device("李四")

    at_library = await _card(world, library, zhang, "wl-030")
    again_at_library = await _card(world, library, zhang, "wl-030")
    other_item_same_library = await _card(world, library, zhang, "wl-011")
    at_museum = await _card(world, museum, zhang, "wl-030")
    li_at_library = await _card(world, library, li, "wl-030")

    assert at_library["pseudonym"] == again_at_library["pseudonym"] == other_item_same_library["pseudonym"]
    assert at_museum["pseudonym"] != at_library["pseudonym"]
    assert li_at_library["pseudonym"] != at_library["pseudonym"]
    assert len({at_library["pseudonym"], at_museum["pseudonym"], li_at_library["pseudonym"]}) == 3


async def test_the_holder_sees_every_accepted_verification_with_what_was_disclosed(world: World) -> None:
    library = await world.merchant(["wl-030"], name="武隆区图书馆")
    hotel = await world.merchant(["wl-011"], name="武隆仙女山酒店")
    device = await world.device("张小三")
    place = {"name": "仙女山店前台", "lat": 29.41, "lon": 107.76}
    at_library = await world.verify(library, await world.code(device), "wl-030")
    at_hotel = await world.verify(hotel, await world.code(device), "wl-011", terminal_id="T-0042", place=place)
    refused = await world.verify(hotel, await world.code(device), "wl-030")
    assert at_library.status_code == at_hotel.status_code == 200
    assert problem(refused) == (403, "merchant_not_entitled")

    answer = await world.signed(device, "GET", f"/v1/cards/{device.ids['card_id']}/verifications")

    assert answer.status_code == 200, answer.text
    items = {item["verification_id"]: item for item in answer.json()["items"]}
    assert set(items) == {at_library.json()["verification_id"], at_hotel.json()["verification_id"]}
    library_entry = items[at_library.json()["verification_id"]]
    assert library_entry["merchant_name"] == "武隆区图书馆"
    assert library_entry["item_code"] == "wl-030"
    assert library_entry["item_name"] == "图书馆入馆、借阅"
    assert sorted(library_entry["disclosed"]) == ["name_masked", "pseudonym"]
    assert library_entry["verified_at"] == at_library.json()["verified_at"]
    assert library_entry.get("terminal_id") is None
    assert library_entry.get("place") is None
    hotel_entry = items[at_hotel.json()["verification_id"]]
    assert hotel_entry["merchant_name"] == "武隆仙女山酒店"
    assert hotel_entry["item_code"] == "wl-011"
    assert hotel_entry["item_name"] == "宾旅馆住宿"
    assert sorted(hotel_entry["disclosed"]) == ["id_number", "name", "pseudonym"]
    assert datetime.fromisoformat(hotel_entry["verified_at"]) == datetime.fromisoformat(at_hotel.json()["verified_at"])
    assert hotel_entry["terminal_id"] == "T-0042"
    assert hotel_entry["place"] == place


async def test_another_device_cannot_read_the_holders_history(world: World) -> None:
    library = await world.merchant(["wl-030"])
    holder = await world.device("张小三")
    stranger = await world.device("李四")
    assert (await world.verify(library, await world.code(holder), "wl-030")).status_code == 200

    answer = await world.signed(stranger, "GET", f"/v1/cards/{holder.ids['card_id']}/verifications")

    assert problem(answer) == (403, "forbidden")
    assert "张" not in answer.text


async def test_a_change_to_what_an_item_discloses_applies_to_the_next_verification(world: World) -> None:
    library = await world.merchant(["wl-030"])
    device = await world.device("张小三")
    assert set(await _card(world, library, device, "wl-030")) == {"pseudonym", "name_masked", "region"}

    await world.app.state.pool.execute(
        "UPDATE catalog_items SET discloses = ARRAY['pseudonym', 'name'] WHERE item_code = 'wl-030'"
    )
    world.app.state.catalog.invalidate()

    card = await _card(world, library, device, "wl-030")
    assert set(card) == {"pseudonym", "name", "region"}
    assert card["name"] == "张小三"
    history = await world.signed(device, "GET", f"/v1/cards/{device.ids['card_id']}/verifications")
    assert sorted(sorted(item["disclosed"]) for item in history.json()["items"]) == [
        ["name", "pseudonym"],
        ["name_masked", "pseudonym"],
    ]
