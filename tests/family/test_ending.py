"""Ending a link: by the guardian or by the member's own phone; codes are refused afterwards; nobody else can."""

from __future__ import annotations

from tests.family.support import added, code_for, consent, enrol, member, notice_kinds, years_ago
from tests.support import World, problem


async def test_after_the_guardian_ends_the_link_codes_are_refused(world: World) -> None:
    clinic = await world.merchant(["wl-040"])
    daughter = await world.device("王小红")
    father = await member(world, "王大山")
    link = await added(world, daughter, father, "parent")
    assert (await consent(world, await world.channel(), link["link_id"], father)).status_code == 200
    outstanding = (await code_for(world, daughter, father["card_id"])).json()["code"]

    path = f"/v1/cards/{daughter.ids['card_id']}/family/{link['link_id']}"
    ended = await world.signed(daughter, "DELETE", path)
    assert ended.status_code == 200, ended.text
    assert ended.json()["status"] == "ended"

    assert problem(await world.verify(clinic, outstanding, "wl-040")) == (403, "family_link_ended")
    assert problem(await code_for(world, daughter, father["card_id"])) == (403, "family_link_ended")
    # ending it again changes nothing, and is told nobody twice
    again = await world.signed(daughter, "DELETE", path)
    assert again.status_code == 200
    assert again.json()["ended_at"] == ended.json()["ended_at"]
    assert [k for k, _ in await notice_kinds(world, daughter)].count("family_link_ended") == 1
    # a new link is a new consent
    relinked = await added(world, daughter, father, "parent")
    assert relinked["link_id"] != link["link_id"]
    assert relinked["status"] == "pending_consent"


async def test_the_member_who_later_enrols_a_second_phone_ends_the_link_from_it(world: World) -> None:
    clinic = await world.merchant(["wl-040"])
    son = await world.device("刘强")
    mother = await member(world, "刘母", years_ago(world, 75))
    link = await added(world, son, mother, "parent")
    assert (await consent(world, await world.channel(), link["link_id"], mother)).status_code == 200
    outstanding = (await code_for(world, son, mother["card_id"])).json()["code"]

    first_phone = await enrol(world, mother)
    second_phone = await enrol(world, mother)

    guardians = await world.signed(second_phone, "GET", f"/v1/cards/{mother['card_id']}/guardians")
    assert guardians.status_code == 200, guardians.text
    [seen] = guardians.json()["items"]
    assert seen["link_id"] == link["link_id"]
    assert seen["status"] == "active"
    assert seen["relation"] == "parent"
    assert seen["name_masked"] == "刘*"
    assert seen["guardian_card_id"] == son.ids["card_id"]

    # the retired phone cannot, the new one can
    path = f"/v1/cards/{mother['card_id']}/family/{link['link_id']}"
    assert problem(await world.signed(first_phone, "DELETE", path)) == (403, "client_disabled")
    ended = await world.signed(second_phone, "DELETE", path)
    assert ended.status_code == 200, ended.text
    assert ended.json()["ended_by"] == "member"

    assert problem(await world.verify(clinic, outstanding, "wl-040")) == (403, "family_link_ended")
    assert problem(await code_for(world, son, mother["card_id"])) == (403, "family_link_ended")
    members = await world.signed(son, "GET", f"/v1/cards/{son.ids['card_id']}/family")
    [shown] = members.json()["items"]
    assert shown["status"] == "ended"
    assert shown["ended_by"] == "member"
    assert shown["name_masked"] == "刘*"
    assert ("family_link_ended", link["link_id"]) in await notice_kinds(world, son)
    assert ("family_link_ended", link["link_id"]) in await notice_kinds(world, second_phone)


async def test_no_other_device_can_end_a_link(world: World) -> None:
    daughter = await world.device("王小红")
    stranger = await world.device("路人甲")
    father = await member(world, "王大山")
    link = await added(world, daughter, father, "parent")

    # under the guardian's card, under its own card, with a made-up link id
    assert problem(
        await world.signed(stranger, "DELETE", f"/v1/cards/{daughter.ids['card_id']}/family/{link['link_id']}")
    ) == (403, "forbidden")
    assert problem(
        await world.signed(stranger, "DELETE", f"/v1/cards/{stranger.ids['card_id']}/family/{link['link_id']}")
    ) == (404, "not_found")
    assert problem(
        await world.signed(daughter, "DELETE", f"/v1/cards/{daughter.ids['card_id']}/family/fam_nonesuch")
    ) == (404, "not_found")
    assert problem(await world.signed(stranger, "GET", f"/v1/cards/{father['card_id']}/guardians")) == (
        403,
        "forbidden",
    )

    listed = await world.signed(daughter, "GET", f"/v1/cards/{daughter.ids['card_id']}/family")
    assert [item["status"] for item in listed.json()["items"]] == ["pending_consent"]


async def test_a_guardian_whose_card_is_reported_lost_can_still_end_the_link(world: World) -> None:
    daughter = await world.device("王小红")
    father = await member(world, "王大山")
    link = await added(world, daughter, father, "parent")
    assert (await consent(world, await world.channel(), link["link_id"], father)).status_code == 200
    lost = await world.signed(daughter, "POST", f"/v1/cards/{daughter.ids['card_id']}/report-lost")
    assert lost.status_code in (200, 201), lost.text

    assert problem(await code_for(world, daughter, father["card_id"])) == (403, "card_suspended")
    ended = await world.signed(daughter, "DELETE", f"/v1/cards/{daughter.ids['card_id']}/family/{link['link_id']}")
    assert ended.status_code == 200, ended.text
    assert ended.json()["status"] == "ended"
