"""Enrolment: a channel vouches for a person, and the person's phone key becomes the e-card."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from ecard.kit.crypto import b64u
from tests.support import Actor, World, ed25519_actor, id_number, p256_actor, problem


async def enrol(
    world: World, channel: Actor, number: str, name: str, device_jwk: Any, device_name: str = "phone"
) -> httpx.Response:
    return await world.signed(
        channel,
        "POST",
        "/v1/enrolments",
        {"id_number": number, "name": name, "device_public_key": device_jwk, "device_name": device_name},
    )


def adopt(actor: Actor, answer: httpx.Response) -> Actor:
    """The phone keeps the key id and ids that enrolment answered."""
    assert answer.status_code == 201, answer.text
    actor.key_id = answer.json()["device_key_id"]
    actor.ids.update(device_id=answer.json()["device_id"], card_id=answer.json()["card_id"])
    return actor


async def device_count(world: World) -> int:
    count: int = await world.app.state.pool.fetchval("SELECT count(*) FROM devices")
    return count


async def test_an_enrolled_device_mints_codes_that_verify(world: World) -> None:
    holder = await world.cardholder("张小三")
    channel = await world.channel()
    phone = p256_actor()

    answer = await enrol(world, channel, holder["id_number"], "张小三", phone.jwk)

    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["card_id"] == holder["card_id"]
    assert body["device_id"].startswith("dev_")
    assert body["device_key_id"]
    adopt(phone, answer)
    merchant = await world.merchant(["wl-030"])
    verified = await world.verify(merchant, await world.code(phone), "wl-030")
    assert verified.status_code == 200, verified.text
    assert verified.json()["card"]["name_masked"] == "张*三"


async def test_an_ed25519_device_key_works_too(world: World) -> None:
    phone = await world.device("李四", actor=ed25519_actor())
    merchant = await world.merchant(["wl-030"])

    verified = await world.verify(merchant, await world.code(phone), "wl-030")

    assert verified.status_code == 200, verified.text
    assert verified.json()["result"] == "accepted"


async def test_an_unknown_person_cannot_be_enrolled(world: World) -> None:
    await world.cardholder("张小三")
    channel = await world.channel()

    answer = await enrol(world, channel, id_number(), "张小三", p256_actor().jwk)

    assert problem(answer) == (404, "cardholder_not_found")
    assert await device_count(world) == 0


async def test_a_name_that_does_not_match_the_registry_is_refused(world: World) -> None:
    holder = await world.cardholder("张小三")
    channel = await world.channel()

    answer = await enrol(world, channel, holder["id_number"], "张小四", p256_actor().jwk)

    assert problem(answer) == (403, "identity_mismatch")
    assert "张小三" not in answer.text
    assert holder["id_number"] not in answer.text
    assert await device_count(world) == 0


@pytest.mark.parametrize("status", ["suspended", "cancelled"])
async def test_a_person_without_an_active_card_cannot_be_enrolled(world: World, status: str) -> None:
    holder = await world.cardholder("张小三")
    assert (await world.set_status(holder["card_id"], status)).status_code == 200
    channel = await world.channel()

    answer = await enrol(world, channel, holder["id_number"], "张小三", p256_actor().jwk)

    assert problem(answer) == (404, "cardholder_not_found")
    assert await device_count(world) == 0


async def test_enrolment_binds_the_persons_active_card_when_an_older_one_is_cancelled(world: World) -> None:
    old = await world.cardholder("张小三")
    assert (await world.set_status(old["card_id"], "cancelled", "replaced")).status_code == 200
    new = await world.cardholder("张小三", number=old["id_number"])
    channel = await world.channel()

    answer = await enrol(world, channel, old["id_number"], "张小三", p256_actor().jwk)

    assert answer.status_code == 201, answer.text
    assert answer.json()["card_id"] == new["card_id"]


def _with_private_part(actor: Actor) -> dict[str, str]:
    if isinstance(actor.key, ed25519.Ed25519PrivateKey):
        return {**actor.jwk, "d": b64u(actor.key.private_bytes_raw())}
    assert isinstance(actor.key, ec.EllipticCurvePrivateKey)
    return {**actor.jwk, "d": b64u(actor.key.private_numbers().private_value.to_bytes(32, "big"))}


@pytest.mark.parametrize(
    "device_jwk",
    [
        pytest.param(_with_private_part(p256_actor()), id="p256-with-private-part"),
        pytest.param(_with_private_part(ed25519_actor()), id="ed25519-with-private-part"),
        pytest.param({"kty": "EC", "crv": "P-256", "x": b64u(bytes(32))}, id="p256-without-y"),
        pytest.param({"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA"}, id="p256-short-coordinates"),
        pytest.param({"kty": "EC", "crv": "P-384", "x": b64u(bytes(48)), "y": b64u(bytes(48))}, id="p384"),
        pytest.param({"kty": "RSA", "n": b64u(bytes(256)), "e": "AQAB"}, id="rsa"),
        pytest.param("-----BEGIN PUBLIC KEY-----", id="pem-string"),
        pytest.param({}, id="empty-object"),
    ],
)
async def test_a_device_key_must_be_a_well_formed_public_jwk(world: World, device_jwk: Any) -> None:
    holder = await world.cardholder("张小三")
    channel = await world.channel()

    answer = await enrol(world, channel, holder["id_number"], "张小三", device_jwk)

    assert problem(answer) == (400, "invalid_request")
    assert answer.json()["fields"] == ["device_public_key"]
    if isinstance(device_jwk, dict) and "d" in device_jwk:
        assert device_jwk["d"] not in answer.text
    assert await device_count(world) == 0


async def test_a_merchant_key_may_not_enrol_devices(world: World) -> None:
    holder = await world.cardholder("张小三")
    merchant = await world.merchant(["wl-030"])

    answer = await enrol(world, merchant, holder["id_number"], "张小三", p256_actor().jwk)

    assert problem(answer) == (403, "forbidden")
    assert await device_count(world) == 0


async def test_a_device_key_may_not_enrol_devices(world: World) -> None:
    phone = await world.device("张小三")
    other = await world.cardholder("李四")

    answer = await enrol(world, phone, other["id_number"], "李四", p256_actor().jwk)

    assert problem(answer) == (403, "forbidden")
    assert await device_count(world) == 1


async def test_an_unsigned_enrolment_is_refused(world: World) -> None:
    holder = await world.cardholder("张小三")

    answer = await world.client.post(
        "/v1/enrolments",
        json={"id_number": holder["id_number"], "name": "张小三", "device_public_key": p256_actor().jwk},
    )

    assert problem(answer) == (401, "signature_missing")


async def test_a_second_enrolment_retires_the_first_device(world: World) -> None:
    first = await world.device("张小三")
    assert (await world.signed(first, "POST", "/v1/codes", {})).status_code == 201
    channel = await world.channel()
    new_phone = p256_actor()
    answer = await enrol(world, channel, first.ids["id_number"], "张小三", new_phone.jwk, "new phone")
    adopt(new_phone, answer)

    assert new_phone.ids["card_id"] == first.ids["card_id"]
    assert new_phone.ids["device_id"] != first.ids["device_id"]
    assert problem(await world.signed(first, "POST", "/v1/codes", {})) == (403, "client_disabled")
    assert problem(await world.signed(first, "GET", f"/v1/cards/{first.ids['card_id']}/verifications")) == (
        403,
        "client_disabled",
    )
    assert (await world.signed(new_phone, "POST", "/v1/codes", {})).status_code == 201
    statuses = await world.app.state.pool.fetch("SELECT device_id, status FROM devices ORDER BY created_at")
    assert [(r["device_id"], r["status"]) for r in statuses] == [
        (first.ids["device_id"], "revoked"),
        (new_phone.ids["device_id"], "active"),
    ]


async def test_enrolment_is_audited_without_personal_data(world: World) -> None:
    phone = await world.device("张小三")

    rows = await world.app.state.pool.fetch(
        "SELECT actor, subject, detail::text AS detail FROM audit_log WHERE action = 'device.enrolled'"
    )

    assert len(rows) == 1
    assert rows[0]["subject"] == phone.ids["card_id"]
    assert phone.ids["device_id"] in rows[0]["detail"]
    assert phone.ids["id_number"] not in rows[0]["detail"]
    assert "张小三" not in rows[0]["detail"]


async def test_two_enrolments_at_once_leave_one_device_holding_the_card(world: World) -> None:
    holder = await world.cardholder("张小三")
    channel = await world.channel()
    phones = [p256_actor() for _ in range(4)]

    answers = await asyncio.gather(
        *(enrol(world, channel, holder["id_number"], "张小三", phone.jwk) for phone in phones)
    )

    for phone, answer in zip(phones, answers, strict=True):
        adopt(phone, answer)
    active = await world.app.state.pool.fetchval("SELECT count(*) FROM devices WHERE status = 'active'")
    assert active == 1
    minted = [(await world.signed(phone, "POST", "/v1/codes", {})).status_code for phone in phones]
    assert sorted(minted) == [201, 403, 403, 403]
