"""A child who turns 16: the link holds through the grace period, then only after the member's consent."""

from __future__ import annotations

from datetime import datetime

from tests.family.support import added, code_for, consent, member, notice_kinds, years_ago
from tests.support import World, problem

DAY = 86400


async def test_a_child_turning_16_keeps_the_link_for_the_grace_period_then_needs_consent(world: World) -> None:
    clinic = await world.merchant(["wl-040"])
    mother = await world.device("陈梅")
    # 16 in five days
    child = await member(world, "陈小雨", years_ago(world, 16, days=-5))
    link = await added(world, mother, child, "child")
    assert link["status"] == "active"
    grace = world.app.state.settings.family_consent_grace_days

    world.clock.advance(6 * DAY)  # 16 now: the grace period runs
    shown = await code_for(world, mother, child["card_id"])
    assert shown.status_code == 201, shown.text
    assert (await world.verify(clinic, shown.json()["code"], "wl-040")).status_code == 200
    listed = (await world.signed(mother, "GET", f"/v1/cards/{mother.ids['card_id']}/family")).json()["items"]
    assert listed[0]["status"] == "active"
    due = datetime.fromisoformat(listed[0]["consent_due_at"]).timestamp()
    assert world.clock.now() < due <= world.clock.now() + grace * DAY

    world.clock.advance(due - world.clock.now() + 1)  # the grace period is over
    assert problem(await code_for(world, mother, child["card_id"])) == (403, "family_consent_required")
    listed = (await world.signed(mother, "GET", f"/v1/cards/{mother.ids['card_id']}/family")).json()["items"]
    assert listed[0]["status"] == "pending_consent"
    assert listed[0]["consent_due_at"] is None
    assert ("family_consent_needed", link["link_id"]) in await notice_kinds(world, mother)
    lapsed = await world.app.state.pool.fetchval(
        "SELECT count(*) FROM audit_log WHERE subject = $1 AND action = 'family.consent_lapsed'", link["link_id"]
    )
    assert lapsed == 1

    assert (await consent(world, await world.channel(), link["link_id"], child)).status_code == 200
    again = await code_for(world, mother, child["card_id"])
    assert again.status_code == 201, again.text
    assert (await world.verify(clinic, again.json()["code"], "wl-040")).status_code == 200


async def test_a_child_who_turned_16_may_consent_during_the_grace_period(world: World) -> None:
    father = await world.device("陈强")
    child = await member(world, "陈小风", years_ago(world, 16, days=-1))
    link = await added(world, father, child, "child")
    assert problem(await consent(world, await world.channel(), link["link_id"], child)) == (
        409,
        "family_consent_not_pending",
    )

    world.clock.advance(2 * DAY)
    confirmed = await consent(world, await world.channel(), link["link_id"], child)
    assert confirmed.status_code == 200, confirmed.text
    world.clock.advance(365 * DAY)
    assert (await code_for(world, father, child["card_id"])).status_code == 201
