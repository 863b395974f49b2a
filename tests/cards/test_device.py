"""The holder's phone: reporting the card lost, and the card's verification history (PINs: test_pins.py)."""

from __future__ import annotations

from tests.support import World, problem

# --- report lost ---------------------------------------------------------------------------------


async def test_reporting_the_card_lost_suspends_it_at_once(world: World) -> None:
    phone = await world.device()
    merchant = await world.merchant(["wl-030"])
    earlier_code = await world.code(phone)

    answer = await world.signed(phone, "POST", f"/v1/cards/{phone.ids['card_id']}/report-lost")

    assert answer.status_code == 200, answer.text
    assert answer.json() == {"status": "suspended"}
    assert problem(await world.signed(phone, "POST", "/v1/codes", {})) == (403, "card_suspended")
    # a code shown before the report no longer gets anyone in
    assert problem(await world.verify(merchant, earlier_code, "wl-030")) == (403, "card_suspended")
    found = (await world.admin("POST", "/v1/admin/cardholders/search", {"id_number": phone.ids["id_number"]})).json()
    assert found["cards"][0]["status"] == "suspended"
    change = await world.app.state.pool.fetchrow(
        "SELECT status, actor FROM card_status_changes WHERE card_id = $1", phone.ids["card_id"]
    )
    assert change["status"] == "suspended"
    assert phone.ids["device_id"] in change["actor"]


async def test_an_operator_reactivates_a_card_reported_lost(world: World) -> None:
    phone = await world.device()
    await world.signed(phone, "POST", f"/v1/cards/{phone.ids['card_id']}/report-lost")

    assert (await world.set_status(phone.ids["card_id"], "active", "found it")).status_code == 200

    assert (await world.signed(phone, "POST", "/v1/codes", {})).status_code == 201


async def test_a_cancelled_card_cannot_be_reported_lost(world: World) -> None:
    phone = await world.device()
    assert (await world.set_status(phone.ids["card_id"], "cancelled")).status_code == 200

    answer = await world.signed(phone, "POST", f"/v1/cards/{phone.ids['card_id']}/report-lost")

    assert problem(answer) == (409, "card_status_conflict")


async def test_a_device_cannot_report_someone_elses_card_lost(world: World) -> None:
    victim = await world.device("张小三")
    intruder = await world.device("李四")

    answer = await world.signed(intruder, "POST", f"/v1/cards/{victim.ids['card_id']}/report-lost")

    assert problem(answer) == (403, "forbidden")
    assert (await world.signed(victim, "POST", "/v1/codes", {})).status_code == 201
    assert await world.app.state.pool.fetchval("SELECT count(*) FROM card_status_changes") == 0


# --- history -------------------------------------------------------------------------------------


async def test_the_holder_sees_every_verification_of_the_card(world: World) -> None:
    phone = await world.device("张小三")
    library = await world.merchant(["wl-030"], name="武隆区图书馆")
    hotel = await world.merchant(["wl-011"], name="仙女山酒店")
    first = await world.verify(library, await world.code(phone), "wl-030", terminal_id="gate-2")
    world.clock.advance(60)
    second = await world.verify(hotel, await world.code(phone), "wl-011")
    assert first.status_code == 200, first.text
    assert second.status_code == 200, second.text

    answer = await world.signed(phone, "GET", f"/v1/cards/{phone.ids['card_id']}/verifications")

    assert answer.status_code == 200, answer.text
    items = answer.json()["items"]
    by_id = {item["verification_id"]: item for item in items}
    assert set(by_id) == {first.json()["verification_id"], second.json()["verification_id"]}
    at_library = by_id[first.json()["verification_id"]]
    assert at_library["merchant_name"] == "武隆区图书馆"
    assert at_library["item_code"] == "wl-030"
    assert at_library["item_name"]
    assert set(at_library["disclosed"]) == {"pseudonym", "name_masked"}
    assert at_library["verified_at"] == first.json()["verified_at"]
    at_hotel = by_id[second.json()["verification_id"]]
    assert at_hotel["merchant_name"] == "仙女山酒店"
    assert {"name", "id_number"} <= set(at_hotel["disclosed"])
    # newest first
    assert [item["verification_id"] for item in items] == [
        second.json()["verification_id"],
        first.json()["verification_id"],
    ]


async def test_the_history_holds_only_the_cards_own_verifications(world: World) -> None:
    phone = await world.device("张小三")
    other = await world.device("李四")
    library = await world.merchant(["wl-030"])
    assert (await world.verify(library, await world.code(other), "wl-030")).status_code == 200

    answer = await world.signed(phone, "GET", f"/v1/cards/{phone.ids['card_id']}/verifications")

    assert answer.status_code == 200, answer.text
    assert answer.json() == {"items": []}


async def test_a_refused_verification_is_not_in_the_history(world: World) -> None:
    phone = await world.device()
    museum = await world.merchant(["wl-031"])
    assert problem(await world.verify(museum, await world.code(phone), "wl-030")) == (403, "merchant_not_entitled")

    answer = await world.signed(phone, "GET", f"/v1/cards/{phone.ids['card_id']}/verifications")

    assert answer.json() == {"items": []}


async def test_a_device_cannot_read_someone_elses_history(world: World) -> None:
    victim = await world.device("张小三")
    intruder = await world.device("李四")
    library = await world.merchant(["wl-030"])
    assert (await world.verify(library, await world.code(victim), "wl-030")).status_code == 200

    answer = await world.signed(intruder, "GET", f"/v1/cards/{victim.ids['card_id']}/verifications")

    assert problem(answer) == (403, "forbidden")
    assert "武隆" not in answer.text


async def test_a_merchant_cannot_read_a_cards_history(world: World) -> None:
    phone = await world.device()
    library = await world.merchant(["wl-030"])
    assert (await world.verify(library, await world.code(phone), "wl-030")).status_code == 200

    answer = await world.signed(library, "GET", f"/v1/cards/{phone.ids['card_id']}/verifications")

    assert problem(answer) == (403, "forbidden")
