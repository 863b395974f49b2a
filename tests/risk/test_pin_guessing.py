"""PIN lockouts: each one an event; three in a day keep payments locked until a channel re-checks the holder."""

from __future__ import annotations

from typing import Any

from tests.risk.parties import events, notices, settled
from tests.support import Actor, World, problem

PIN = "482916"
NEW_PIN = "915264"
WRONG = "246801"
LOCK_S = 30 * 60


async def put_pin(world: World, holder: Actor, body: dict[str, Any]) -> int:
    answer = await world.signed(holder, "PUT", f"/v1/devices/{holder.ids['device_id']}/pin", body)
    return answer.status_code


async def holder_with_pin(world: World) -> Actor:
    holder = await world.device()
    assert await put_pin(world, holder, {"pin": PIN}) == 204
    return holder


async def lock_out(world: World, holder: Actor) -> None:
    """Five wrong PINs: the fifth locks the card's PIN."""
    answers = [await put_pin(world, holder, {"pin": NEW_PIN, "current_pin": WRONG}) for _ in range(5)]
    assert answers == [403, 403, 403, 403, 423]


async def test_one_lockout_is_a_medium_event_and_the_pin_works_again_after_the_lock(world: World) -> None:
    holder = await holder_with_pin(world)
    await lock_out(world, holder)
    await settled(world)

    [event] = await events(world, kind="pin_guessing")
    assert (event["card_id"], event["severity"], event["action"]) == (holder.ids["card_id"], "medium", "none")
    assert event["detail"] == {"lockouts": 1, "escalated": False}
    world.clock.advance(LOCK_S + 1)
    assert await put_pin(world, holder, {"pin": NEW_PIN, "current_pin": PIN}) == 204


async def test_two_lockouts_in_a_day_do_not_escalate(world: World) -> None:
    holder = await holder_with_pin(world)
    for _ in range(2):
        await lock_out(world, holder)
        world.clock.advance(LOCK_S + 1)
    await settled(world)

    assert [e["severity"] for e in await events(world, kind="pin_guessing")] == ["medium", "medium"]
    assert await put_pin(world, holder, {"pin": NEW_PIN, "current_pin": PIN}) == 204


async def test_three_lockouts_spread_over_more_than_a_day_do_not_escalate(world: World) -> None:
    holder = await holder_with_pin(world)
    for _ in range(3):
        await lock_out(world, holder)
        world.clock.advance(13 * 3600)
    await settled(world)

    assert {e["severity"] for e in await events(world, kind="pin_guessing")} == {"medium"}
    assert await put_pin(world, holder, {"pin": NEW_PIN, "current_pin": PIN}) == 204


async def test_three_lockouts_in_a_day_hold_the_pin_until_a_channel_re_checks_the_holder(world: World) -> None:
    holder = await holder_with_pin(world)
    for _ in range(3):
        await lock_out(world, holder)
        world.clock.advance(LOCK_S + 1)
    await settled(world)

    escalated = [e for e in await events(world, kind="pin_guessing") if e["severity"] == "high"]
    assert len(escalated) == 1
    assert escalated[0]["action"] == "payments_locked"
    assert escalated[0]["detail"] == {"lockouts": 3, "window_s": 86_400, "escalated": True}
    assert "pin_held" in [n["kind"] for n in await notices(world, holder)]

    # the lock does not run out: not even the right PIN is checked, a day later
    world.clock.advance(86_400)
    changed = await world.signed(
        holder, "PUT", f"/v1/devices/{holder.ids['device_id']}/pin", {"pin": NEW_PIN, "current_pin": PIN}
    )
    assert problem(changed) == (423, "pin_locked")
    assert "channel" in changed.json()["detail"]

    # a channel checks the holder's real name again and grants a reset; the new PIN works
    granted = await world.signed(
        await world.channel(),
        "POST",
        f"/v1/devices/{holder.ids['device_id']}/pin-reset",
        {"id_number": holder.ids["id_number"], "name": holder.ids["name"]},
    )
    assert granted.status_code == 201, granted.text
    assert await put_pin(world, holder, {"pin": NEW_PIN, "reset_token": granted.json()["reset_token"]}) == 204
    assert await put_pin(world, holder, {"pin": PIN, "current_pin": NEW_PIN}) == 204
    assert await world.audit_intact()
