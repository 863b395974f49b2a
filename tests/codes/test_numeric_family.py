"""A daughter shows her father's card as an 18-digit code: his data, his history says family, refused once ended."""

from __future__ import annotations

from tests.family.support import added, consent, enrol, member, years_ago
from tests.support import World, problem


async def test_a_guardian_types_her_fathers_numeric_code_and_it_ends_with_the_link(world: World) -> None:
    clinic = await world.merchant(["wl-040"], name="武隆区人民医院")
    daughter = await world.device("王小红")
    father = await member(world, "王大山", years_ago(world, 80))
    link = await added(world, daughter, father, "parent")
    assert (await consent(world, await world.channel(), link["link_id"], father)).status_code == 200

    minted = await world.signed(daughter, "POST", "/v1/codes", {"form": "numeric", "card_id": father["card_id"]})
    assert minted.status_code == 201, minted.text
    code = minted.json()["code"]
    assert len(code) == 18
    checked = await world.verify(clinic, code, "wl-040")
    assert checked.status_code == 200, checked.text
    assert checked.json()["card"]["name"] == "王大山"
    assert "王小红" not in checked.text

    phone = await enrol(world, father)
    [entry] = (await world.signed(phone, "GET", f"/v1/cards/{father['card_id']}/verifications")).json()["items"]
    assert (entry["via"], entry["relation"]) == ("family", "parent")

    later = await world.signed(daughter, "POST", "/v1/codes", {"form": "numeric", "card_id": father["card_id"]})
    assert later.status_code == 201, later.text
    ended = await world.signed(daughter, "DELETE", f"/v1/cards/{daughter.ids['card_id']}/family/{link['link_id']}")
    assert ended.status_code in (200, 204), ended.text
    assert problem(await world.verify(clinic, later.json()["code"], "wl-040")) == (403, "family_link_ended")


async def test_a_numeric_code_for_a_card_not_linked_is_refused(world: World) -> None:
    stranger = await world.device("李四")
    other = await world.device("张小三")
    answer = await world.signed(stranger, "POST", "/v1/codes", {"form": "numeric", "card_id": other.ids["card_id"]})
    assert problem(answer) == (403, "forbidden")
