"""Each rule, with what it must catch and its innocent counterpart that must raise nothing."""

from __future__ import annotations

from tests.risk.parties import (
    CHENGDU,
    HOTEL,
    LIBRARY,
    WULONG,
    WULONG_NORTH,
    events,
    notices,
    settled,
    terminal_at,
    verified,
)
from tests.support import Actor, World, p256_actor, problem

# --- impossible_travel -----------------------------------------------------------------------------------------


async def test_wulong_then_chengdu_a_minute_later_suspends_the_card_and_tells_the_holder(world: World) -> None:
    library = await world.merchant([LIBRARY])
    wulong = await terminal_at(world, library, "wl-desk", WULONG)
    chengdu = await terminal_at(world, library, "cd-desk", CHENGDU, region="chengdu")
    holder = await world.device()
    await verified(world, wulong, holder)
    world.clock.advance(60)
    await verified(world, chengdu, holder)
    await settled(world)

    [event] = await events(world, kind="impossible_travel")
    assert event["card_id"] == holder.ids["card_id"]
    assert (event["severity"], event["action"], event["status"]) == ("high", "suspended", "open")
    assert event["detail"]["km"] > 250
    assert event["merchant_id"] == library.ids["merchant_id"]
    # the card stops working at once, and the holder reads why in the app
    assert problem(await world.signed(holder, "POST", "/v1/codes", {})) == (403, "card_suspended")
    assert [n["detail"]["event_id"] for n in await notices(world, holder) if n["kind"] == "risk_suspended"] == [
        event["event_id"]
    ]


async def test_the_same_card_twice_at_one_library_in_an_hour_raises_nothing(world: World) -> None:
    library = await world.merchant([LIBRARY])
    desk = await terminal_at(world, library, "desk", WULONG)
    north_door = await terminal_at(world, library, "north", WULONG_NORTH)
    holder = await world.device()
    await verified(world, desk, holder)
    world.clock.advance(3600)
    await verified(world, desk, holder)
    world.clock.advance(5)
    await verified(world, north_door, holder)  # half a kilometre in five seconds: one venue, not a journey
    await settled(world)

    assert await events(world) == []
    assert (await world.signed(holder, "POST", "/v1/codes", {})).status_code == 201


async def test_wulong_then_chengdu_by_the_evening_train_raises_nothing(world: World) -> None:
    library = await world.merchant([LIBRARY])
    wulong = await terminal_at(world, library, "wl-desk", WULONG)
    chengdu = await terminal_at(world, library, "cd-desk", CHENGDU, region="chengdu")
    holder = await world.device()
    await verified(world, wulong, holder)
    world.clock.advance(5 * 3600)
    await verified(world, chengdu, holder)
    await settled(world)

    assert await events(world, kind="impossible_travel") == []


async def test_a_place_a_merchant_merely_claims_is_no_ground_for_travel(world: World) -> None:
    library = await world.merchant([LIBRARY])
    holder = await world.device()
    near = {"name": "desk", "address": "a", "region": "wulong", "lat": WULONG[0], "lon": WULONG[1]}
    far = {**near, "lat": CHENGDU[0], "lon": CHENGDU[1]}
    for place in (near, far):
        answer = await world.verify(library, await world.code(holder), LIBRARY, place=place)
        assert answer.status_code == 200, answer.text
    await settled(world)

    assert await events(world, kind="impossible_travel") == []


# --- velocity --------------------------------------------------------------------------------------------------


async def test_thirty_verifications_in_a_burst_raise_velocity_once(world: World) -> None:
    library = await world.merchant([LIBRARY])
    holder = await world.device()
    for _ in range(30):
        await verified(world, library, holder)
    await settled(world)

    [event] = await events(world, kind="velocity")
    assert (event["card_id"], event["severity"], event["action"]) == (holder.ids["card_id"], "medium", "none")
    assert event["detail"] == {"verifications": 21, "window_s": 600}
    assert (await world.signed(holder, "POST", "/v1/codes", {})).status_code == 201


async def test_a_busy_day_spread_over_hours_is_no_burst(world: World) -> None:
    library = await world.merchant([LIBRARY])
    holder = await world.device()
    for _ in range(30):
        await verified(world, library, holder)
        world.clock.advance(60)
    await settled(world)

    assert await events(world, kind="velocity") == []


# --- merchant_harvest ------------------------------------------------------------------------------------------


async def test_a_hotel_checking_two_dozen_guests_id_numbers_in_minutes_raises_merchant_harvest(world: World) -> None:
    hotel = await world.merchant([HOTEL], name="武隆某宾馆")
    channel = await world.channel()
    for _ in range(24):
        await verified(world, hotel, await world.device(channel=channel), HOTEL)
        world.clock.advance(10)
    await settled(world)

    [event] = await events(world, kind="merchant_harvest")
    assert (event["merchant_id"], event["card_id"], event["severity"]) == (hotel.ids["merchant_id"], None, "high")
    assert event["detail"]["distinct_cards"] == 21
    assert event["detail"]["item_code"] == HOTEL


async def test_a_library_seeing_two_dozen_readers_learns_no_names_and_raises_nothing(world: World) -> None:
    library = await world.merchant([LIBRARY])
    channel = await world.channel()
    for _ in range(24):
        await verified(world, library, await world.device(channel=channel))
    await settled(world)

    assert await events(world) == []


async def test_one_guest_checked_in_again_and_again_is_not_harvesting(world: World) -> None:
    hotel = await world.merchant([HOTEL], name="武隆某宾馆")
    guest = await world.device()
    for _ in range(5):
        await verified(world, hotel, guest, HOTEL)
    await settled(world)

    assert await events(world, kind="merchant_harvest") == []


# --- enrolment_churn -------------------------------------------------------------------------------------------


async def enrol_again(world: World, holder: dict[str, str], channel: Actor) -> None:
    answer = await world.signed(
        channel,
        "POST",
        "/v1/enrolments",
        {
            "id_number": holder["id_number"],
            "name": holder["name"],
            "device_public_key": p256_actor().jwk,
            "device_name": "phone",
        },
    )
    assert answer.status_code == 201, answer.text


async def test_a_card_enrolled_on_four_phones_in_a_week_raises_enrolment_churn(world: World) -> None:
    holder = await world.cardholder()
    channel = await world.channel()
    for _ in range(4):
        await enrol_again(world, holder, channel)
        world.clock.advance(86_400)
    await settled(world)

    [event] = await events(world, kind="enrolment_churn")
    assert (event["card_id"], event["severity"]) == (holder["card_id"], "medium")
    assert event["detail"]["enrolments"] == 4


async def test_a_new_phone_now_and_then_is_no_churn(world: World) -> None:
    holder = await world.cardholder()
    channel = await world.channel()
    for _ in range(4):
        await enrol_again(world, holder, channel)
        world.clock.advance(8 * 86_400)
    await settled(world)

    assert await events(world, kind="enrolment_churn") == []
