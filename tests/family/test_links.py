"""Adding family members: who can be added, the limits per relation, child or adult, consent through a channel."""

from __future__ import annotations

import asyncio

import pytest

from ecard.kit.signing import sign_request
from tests.family.support import add, added, born_on, code_for, consent, member, notice_kinds, years_ago
from tests.support import World, ed25519_actor, problem


async def test_an_adult_member_is_pending_until_a_channel_confirms_their_own_real_name_check(world: World) -> None:
    daughter = await world.device("王小红")
    father = await member(world, "王大山", years_ago(world, 80))

    link = await added(world, daughter, father, "parent")

    assert link["status"] == "pending_consent"
    assert link["member_card_id"] == father["card_id"]
    assert link["link_id"].startswith("fam_")
    assert problem(await code_for(world, daughter, father["card_id"])) == (403, "family_consent_required")

    channel = await world.channel()
    confirmed = await consent(world, channel, link["link_id"], father)
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["status"] == "active"
    assert confirmed.json()["consented_at"] is not None
    assert (await code_for(world, daughter, father["card_id"])).status_code == 201
    # a second confirmation has nothing left to confirm
    assert problem(await consent(world, channel, link["link_id"], father)) == (409, "family_consent_not_pending")


async def test_a_child_under_16_is_active_at_once(world: World) -> None:
    mother = await world.device("李梅")
    son = await member(world, "李小明", years_ago(world, 15, days=300))

    link = await added(world, mother, son, "child")

    assert link["status"] == "active"
    assert (await code_for(world, mother, son["card_id"])).status_code == 201
    assert problem(await consent(world, await world.channel(), link["link_id"], son)) == (
        409,
        "family_consent_not_pending",
    )


async def test_a_child_who_is_16_already_needs_consent_like_any_adult(world: World) -> None:
    mother = await world.device("李梅")
    daughter = await member(world, "李小红", years_ago(world, 16))

    assert (await added(world, mother, daughter, "child"))["status"] == "pending_consent"


@pytest.mark.parametrize(("relation", "limit"), [("parent", 4), ("child", 3), ("spouse", 1), ("other", 2)])
async def test_each_relation_has_its_limit_and_an_ended_link_frees_its_place(
    world: World, relation: str, limit: int
) -> None:
    holder = await world.device("赵六")
    links = [await added(world, holder, await member(world, f"赵{n}号"), relation) for n in range(limit)]

    refused = await add(world, holder, await member(world, "赵超限"), relation)
    assert problem(refused) == (409, "family_limit")
    assert refused.json()["relation"] == relation
    assert refused.json()["limit"] == limit
    # the other relations still have room
    other = "other" if relation != "other" else "parent"
    assert (await add(world, holder, await member(world, "赵另一"), other)).status_code == 201

    ended = await world.signed(holder, "DELETE", f"/v1/cards/{holder.ids['card_id']}/family/{links[0]['link_id']}")
    assert ended.status_code == 200, ended.text
    assert (await add(world, holder, await member(world, "赵补上"), relation)).status_code == 201


async def test_ten_members_in_all_fill_every_relation(world: World) -> None:
    holder = await world.device("钱七")
    for relation, limit in (("parent", 4), ("child", 3), ("spouse", 1), ("other", 2)):
        for n in range(limit):
            await added(world, holder, await member(world, f"钱{relation}{n}"), relation)

    listed = await world.signed(holder, "GET", f"/v1/cards/{holder.ids['card_id']}/family")
    assert len(listed.json()["items"]) == 10
    for relation in ("parent", "child", "spouse", "other"):
        assert problem(await add(world, holder, await member(world, "钱多余"), relation)) == (409, "family_limit")


async def test_a_member_must_hold_a_card_and_be_named_as_the_registry_names_them(world: World) -> None:
    holder = await world.device("孙八")
    father = await member(world, "孙大海")

    nobody = await add(world, holder, {"id_number": born_on(years_ago(world, 70)), "name": "孙大海"}, "parent")
    assert problem(nobody) == (404, "cardholder_not_found")
    misnamed = await add(world, holder, {**father, "name": "孙大河"}, "parent")
    assert problem(misnamed) == (403, "identity_mismatch")
    assert "孙大海" not in misnamed.text
    assert father["id_number"] not in misnamed.text
    not_a_number = await add(world, holder, {**father, "id_number": "50010119"}, "parent")
    assert problem(not_a_number) == (400, "invalid_request")

    assert (await add(world, holder, father, "parent")).status_code == 201
    assert problem(await add(world, holder, father, "other")) == (409, "family_link_exists")
    myself = {"id_number": holder.ids["id_number"], "name": holder.ids["name"]}
    assert problem(await add(world, holder, myself, "other")) == (400, "invalid_request")


@pytest.mark.parametrize(
    "body",
    [
        {"id_number": "x", "name": "y"},
        {"id_number": "x", "name": "y", "relation": "cousin"},
        {"id_number": "x", "name": "y", "relation": "parent", "extra": 1},
        {"id_number": 5, "name": "y", "relation": "parent"},
        [],
    ],
)
async def test_a_malformed_add_is_an_invalid_request(world: World, body: object) -> None:
    holder = await world.device("孙八")
    answer = await world.signed(holder, "POST", f"/v1/cards/{holder.ids['card_id']}/family", body)
    assert problem(answer) == (400, "invalid_request")


async def test_a_device_adds_members_to_its_own_card_only(world: World) -> None:
    holder = await world.device("周九")
    stranger = await world.device("吴十")
    father = await member(world, "周大")

    answer = await world.signed(
        stranger,
        "POST",
        f"/v1/cards/{holder.ids['card_id']}/family",
        {"id_number": father["id_number"], "name": father["name"], "relation": "parent"},
    )
    assert problem(answer) == (403, "forbidden")
    listed = await world.signed(stranger, "GET", f"/v1/cards/{holder.ids['card_id']}/family")
    assert problem(listed) == (403, "forbidden")


async def test_wrong_guesses_of_a_person_are_limited_per_guardian(world: World) -> None:
    holder = await world.device("郑一")
    father = await member(world, "郑老")
    allowed = world.app.state.settings.family_match_failures
    for n in range(allowed):
        assert problem(await add(world, holder, {**father, "name": f"郑{n}"}, "parent")) == (403, "identity_mismatch")

    refused = await add(world, holder, father, "parent")
    assert problem(refused) == (429, "too_many_requests")
    assert int(refused.headers["retry-after"]) > 0
    # another guardian is not held back by this one's guesses
    assert (await add(world, await world.device("郑二"), father, "parent")).status_code == 201


async def test_consent_takes_a_channel_vouching_for_the_member_themself(world: World) -> None:
    son = await world.device("冯一")
    mother = await member(world, "冯母")
    link = await added(world, son, mother, "parent")
    channel = await world.channel()

    # a merchant, the guardian's device, a forged signature, the wrong person, an unknown link: all refused
    merchant = await world.merchant(["wl-030"])
    assert (await consent(world, merchant, link["link_id"], mother)).status_code in (401, 403)
    assert (await consent(world, son, link["link_id"], mother)).status_code in (401, 403)
    forger = ed25519_actor()
    forger.key_id = channel.key_id
    assert problem(await consent(world, forger, link["link_id"], mother)) == (401, "signature_invalid")
    wrong_person = await consent(world, channel, link["link_id"], {**mother, "name": "冯姨"})
    assert problem(wrong_person) == (403, "identity_mismatch")
    assert problem(await consent(world, channel, "fam_nonesuch", mother)) == (404, "not_found")
    assert problem(await consent(world, channel, link["link_id"].replace("fam_", "crd_"), mother)) == (
        404,
        "not_found",
    )
    # a signature over another body does not carry the consent
    body = b'{"id_number": "x", "name": "y"}'
    url = f"{str(world.client.base_url).rstrip('/')}/v1/family/{link['link_id']}/consent"
    headers = sign_request("POST", url, body, channel.key, channel.key_id, channel.alg, created=world.clock.now())
    tampered = await world.client.post(
        f"/v1/family/{link['link_id']}/consent",
        content=b'{"id_number": "' + mother["id_number"].encode() + b'", "name": "' + mother["name"].encode() + b'"}',
        headers={"Content-Type": "application/json", **headers},
    )
    assert tampered.status_code == 401
    assert problem(await code_for(world, son, mother["card_id"])) == (403, "family_consent_required")

    assert (await consent(world, channel, link["link_id"], mother)).status_code == 200
    assert (await code_for(world, son, mother["card_id"])).status_code == 201


async def test_every_link_change_is_audited_and_told_to_both_sides(world: World) -> None:
    guardian = await world.device("褚一")
    father = await member(world, "褚父")
    link = await added(world, guardian, father, "parent")
    assert (await consent(world, await world.channel(), link["link_id"], father)).status_code == 200
    ended = await world.signed(guardian, "DELETE", f"/v1/cards/{guardian.ids['card_id']}/family/{link['link_id']}")
    assert ended.status_code == 200, ended.text
    assert ended.json()["status"] == "ended"
    assert ended.json()["ended_by"] == "guardian"

    actions = [
        r["action"]
        for r in await world.app.state.pool.fetch(
            "SELECT action FROM audit_log WHERE subject = $1 ORDER BY entry_id", link["link_id"]
        )
    ]
    assert actions == ["family.link_added", "family.link_consented", "family.link_ended"]
    assert await world.audit_intact()
    kinds = [("family_link_ended", link["link_id"]), ("family_link_active", link["link_id"])]
    kinds.append(("family_link_added", link["link_id"]))
    assert [k for k in await notice_kinds(world, guardian) if k[1] == link["link_id"]] == kinds
    # the member's side is told just the same (read here from the store: the member has no phone yet)
    told = await world.app.state.pool.fetch(
        "SELECT kind FROM notices WHERE card_id = $1 ORDER BY seq", father["card_id"]
    )
    assert [r["kind"] for r in told] == ["family_link_added", "family_link_active", "family_link_ended"]
    # nothing personal in what either side is told or in the audit entries
    rows = await world.app.state.pool.fetch(
        "SELECT detail::text AS d FROM notices UNION ALL SELECT detail::text FROM audit_log"
    )
    assert not any(father["name"] in r["d"] or father["id_number"] in r["d"] for r in rows)


async def test_simultaneous_adds_cannot_pass_a_limit_together(world: World) -> None:
    holder = await world.device("卫一")
    spouses = [await member(world, f"卫配偶{n}") for n in range(5)]

    answers = await asyncio.gather(*(add(world, holder, person, "spouse") for person in spouses))

    assert sorted(a.status_code for a in answers) == [201, 409, 409, 409, 409]
    assert {problem(a) for a in answers if a.status_code == 409} == {(409, "family_limit")}
