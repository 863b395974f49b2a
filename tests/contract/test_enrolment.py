"""API.md, "Enrolment and the device": enrolment by a channel, the PIN, report-lost and the card's history."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.contract.support import PIN, Integrator, problem_of
from tests.support import Actor, ed25519_actor, id_number, p256_actor


@pytest.mark.parametrize("device_key", [p256_actor, ed25519_actor], ids=["p256", "ed25519"])
async def test_post_enrolments_answers_201_card_id_device_id_and_device_key_id(
    api: Integrator, device_key: Callable[[], Actor]
) -> None:
    """`POST /v1/enrolments` (channel-signed) `{"id_number","name","device_public_key":<JWK P-256 or Ed25519>,
    "device_name"}` → 201 `{"card_id","device_id","device_key_id"}`."""
    holder = await api.cardholder("李小龙")
    channel = await api.channel()
    phone: Actor = device_key()
    body = {"id_number": holder["id_number"], "name": "李小龙", "device_public_key": phone.jwk, "device_name": "华为"}

    answer = await api.signed(channel, "POST", "/v1/enrolments", body)

    assert answer.status_code == 201, answer.text
    assert answer.json()["card_id"] == holder["card_id"]
    assert {"card_id", "device_id", "device_key_id"} <= answer.json().keys()
    phone.key_id = answer.json()["device_key_id"]
    assert (await api.signed(phone, "POST", "/v1/codes", {})).status_code == 201


async def test_enrolment_without_an_active_card_of_that_person_is_cardholder_not_found(api: Integrator) -> None:
    """Refused when no active card of that person exists (404 `cardholder_not_found`)."""
    channel = await api.channel()
    body = {"id_number": id_number(), "name": "李小龙", "device_public_key": p256_actor().jwk, "device_name": "华为"}

    answer = await api.signed(channel, "POST", "/v1/enrolments", body)

    assert problem_of(answer) == (404, "cardholder_not_found")


async def test_enrolment_with_a_name_that_does_not_match_is_identity_mismatch(api: Integrator) -> None:
    """... or the name does not match (403 `identity_mismatch`)."""
    holder = await api.cardholder("李小龙")
    channel = await api.channel()
    key = p256_actor().jwk
    body = {"id_number": holder["id_number"], "name": "李大龙", "device_public_key": key, "device_name": "x"}

    answer = await api.signed(channel, "POST", "/v1/enrolments", body)

    assert problem_of(answer) == (403, "identity_mismatch")


async def test_put_device_pin_on_a_device_without_one_answers_204(api: Integrator) -> None:
    """`PUT /v1/devices/{device_id}/pin` (device-signed) `{"pin": "6 digits"}` → 204 (a newly enrolled phone)."""
    phone = await api.phone()

    answer = await api.pin(phone, PIN)

    assert answer.status_code == 204, answer.text
    assert answer.content == b""


async def test_post_report_lost_answers_200_suspended(api: Integrator) -> None:
    """`POST /v1/cards/{card_id}/report-lost` (device-signed) → 200 `{"status":"suspended"}`."""
    phone = await api.phone()

    answer = await api.signed(phone, "POST", f"/v1/cards/{phone.ids['card_id']}/report-lost")

    assert answer.status_code == 200, answer.text
    assert answer.json() == {"status": "suspended"}
    assert problem_of(await api.signed(phone, "POST", "/v1/codes", {})) == (403, "card_suspended")


async def test_get_card_verifications_lists_who_checked_the_card(api: Integrator) -> None:
    """`GET /v1/cards/{card_id}/verifications` (device-signed) → 200 `{"items":[{"verification_id","merchant_name",
    "item_code","item_name","disclosed":[attribute names],"verified_at"}]}`."""
    phone = await api.phone()
    library = await api.merchant(["wl-030"], name="武隆区图书馆")
    verified = await api.verify(library, await api.code(phone), "wl-030")
    assert verified.status_code == 200, verified.text

    answer = await api.signed(phone, "GET", f"/v1/cards/{phone.ids['card_id']}/verifications")

    assert answer.status_code == 200, answer.text
    [entry] = answer.json()["items"]
    assert {"verification_id", "merchant_name", "item_code", "item_name", "disclosed", "verified_at"} <= entry.keys()
    assert entry["verification_id"] == verified.json()["verification_id"]
    assert (entry["merchant_name"], entry["item_code"]) == ("武隆区图书馆", "wl-030")
    assert sorted(entry["disclosed"]) == sorted(["pseudonym", "name_masked"])
