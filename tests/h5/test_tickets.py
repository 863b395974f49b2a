"""A channel's enrolment ticket for the citizen pages, its single use, and the page session it leads to."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from tests.h5.conftest import REDEEMS_PER_SOURCE
from tests.support import Actor, World, ed25519_actor, p256_actor, problem


async def ticket_for(world: World, name: str = "王小梅") -> tuple[dict[str, str], Actor, dict[str, Any]]:
    holder = await world.cardholder(name)
    channel = await world.channel()
    answer = await world.signed(
        channel, "POST", "/v1/enrolments/tickets", {"id_number": holder["id_number"], "name": name}
    )
    assert answer.status_code == 201, answer.text
    return holder, channel, answer.json()


async def redeem(world: World, ticket: str, phone: Actor) -> Any:
    return await world.client.post(
        "/v1/enrolments/ticketed",
        json={"ticket": ticket, "device_public_key": phone.jwk, "device_name": "H5"},
    )


async def test_a_ticket_enrols_the_pages_key_which_then_signs_like_any_device(world: World) -> None:
    holder, _, made = await ticket_for(world)
    target = urlsplit(made["h5_url"])
    assert target.path == "/h5/"
    assert target.query == ""
    assert target.fragment == f"ticket={made['ticket']}"
    assert holder["id_number"] not in made["h5_url"]

    phone = p256_actor()
    answer = await redeem(world, made["ticket"], phone)

    assert answer.status_code == 201, answer.text
    assert set(answer.json()) == {"card_id", "device_id", "device_key_id"}
    assert answer.json()["card_id"] == holder["card_id"]
    phone.key_id = answer.json()["device_key_id"]
    code = await world.signed(phone, "POST", "/v1/codes", {})
    assert code.status_code == 201, code.text


async def test_a_ticket_is_used_once(world: World) -> None:
    _, _, made = await ticket_for(world)
    assert (await redeem(world, made["ticket"], p256_actor())).status_code == 201

    again = await redeem(world, made["ticket"], p256_actor())

    assert problem(again) == (401, "ticket_invalid")


async def test_an_expired_or_unknown_ticket_is_refused_alike(world: World) -> None:
    _, _, made = await ticket_for(world)
    world.clock.advance(301)

    expired = await redeem(world, made["ticket"], p256_actor())
    unknown = await redeem(world, "A" * 43, p256_actor())

    assert problem(expired) == (401, "ticket_invalid")
    assert problem(unknown) == (401, "ticket_invalid")
    assert expired.json()["detail"] == unknown.json()["detail"]


async def test_a_ticket_just_inside_its_five_minutes_still_enrols(world: World) -> None:
    _, _, made = await ticket_for(world)
    world.clock.advance(290)

    assert (await redeem(world, made["ticket"], p256_actor())).status_code == 201


async def test_tickets_need_the_channels_signature_and_the_real_name(world: World) -> None:
    holder = await world.cardholder("王小梅")
    channel = await world.channel()
    body = {"id_number": holder["id_number"], "name": "王小梅"}

    unsigned = await world.client.post("/v1/enrolments/tickets", json=body)
    forged = await world.signed(
        channel, "POST", "/v1/enrolments/tickets", body, headers={"Signature": "sig1=:" + "A" * 88 + ":"}
    )
    device = await world.device("李四")
    by_device = await world.signed(device, "POST", "/v1/enrolments/tickets", body)
    wrong_name = await world.signed(channel, "POST", "/v1/enrolments/tickets", {**body, "name": "王小"})

    assert problem(unsigned) == (401, "signature_missing")
    assert problem(forged) == (401, "signature_invalid")
    assert problem(by_device) == (403, "forbidden")
    assert problem(wrong_name) == (403, "identity_mismatch")


async def test_a_bad_key_is_refused_before_the_ticket_is_spent(world: World) -> None:
    _, _, made = await ticket_for(world)
    refused = await world.client.post(
        "/v1/enrolments/ticketed", json={"ticket": made["ticket"], "device_public_key": {"kty": "RSA"}}
    )
    assert problem(refused) == (400, "invalid_request")

    assert (await redeem(world, made["ticket"], ed25519_actor())).status_code == 201


async def test_a_page_enrolment_retires_the_apps_device(world: World) -> None:
    app_phone = await world.device("王小梅")
    channel = await world.channel()
    answer = await world.signed(
        channel,
        "POST",
        "/v1/enrolments/tickets",
        {"id_number": app_phone.ids["id_number"], "name": "王小梅"},
    )

    assert (await redeem(world, answer.json()["ticket"], p256_actor())).status_code == 201

    refused = await world.signed(app_phone, "POST", "/v1/codes", {})
    assert problem(refused) == (403, "client_disabled")


async def test_ticketed_enrolments_are_limited_per_source_address(world: World) -> None:
    for _ in range(REDEEMS_PER_SOURCE):
        assert problem(await redeem(world, "B" * 43, p256_actor())) == (401, "ticket_invalid")
    _, _, made = await ticket_for(world)

    limited = await redeem(world, made["ticket"], p256_actor())

    assert problem(limited) == (429, "too_many_requests")
    assert int(limited.headers["retry-after"]) > 0


async def test_issuing_and_redeeming_are_audited_without_personal_data(world: World) -> None:
    holder, channel, made = await ticket_for(world, "王小梅")
    await redeem(world, made["ticket"], p256_actor())

    rows = await world.app.state.pool.fetch(
        "SELECT actor, action, subject, detail::text AS detail FROM audit_log"
        " WHERE action IN ('enrolment.ticket_issued', 'device.enrolled') ORDER BY entry_id"
    )

    assert [(r["action"], r["actor"], r["subject"]) for r in rows] == [
        ("enrolment.ticket_issued", channel.ids["channel_id"], holder["card_id"]),
        ("device.enrolled", channel.ids["channel_id"], holder["card_id"]),
    ]
    assert '"via": "ticket"' in rows[1]["detail"]
    for row in rows:
        assert holder["id_number"] not in row["detail"]
        assert "王小梅" not in row["detail"]
        assert made["ticket"] not in row["detail"]
