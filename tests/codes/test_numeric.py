"""The 18-digit numeric code: typed at a counter it verifies once; every refusal of EC1, and wrong guesses throttled."""

from __future__ import annotations

from typing import Any

import pytest

from ecard.codes.numeric import luhn_digit
from ecard.kit.crypto import SealError
from tests.support import Actor, World, problem


async def _numeric(world: World, device: Actor) -> dict[str, Any]:
    answer = await world.signed(device, "POST", "/v1/codes", {"form": "numeric"})
    assert answer.status_code == 201, answer.text
    assert answer.headers["cache-control"] == "no-store"
    body: dict[str, Any] = answer.json()
    return body


def _with_check_digit(body: str) -> str:
    return body + luhn_digit(body)


async def _risk_kinds(world: World) -> list[str]:
    rows = await world.app.state.pool.fetch("SELECT kind FROM risk_events ORDER BY event_id")
    return [r["kind"] for r in rows]


async def test_a_numeric_code_typed_at_a_counter_verifies_once(world: World) -> None:
    library = await world.merchant(["wl-030"])
    device = await world.device("王老五")
    minted = await _numeric(world, device)
    code = minted["code"]
    assert len(code) == 18
    assert code.isdigit()
    assert code.startswith("5001")  # Chongqing's issuer digits, version 01: what a terminal routes by
    assert code[-1] == luhn_digit(code[:-1])
    assert "expires_at" in minted

    accepted = await world.verify(library, code)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["card"]["name_masked"] == "王*五"

    assert problem(await world.verify(library, code)) == (409, "code_already_used")
    assert await _risk_kinds(world) == ["code_replay"]
    history = await world.signed(device, "GET", f"/v1/cards/{device.ids['card_id']}/verifications")
    assert [item["verification_id"] for item in history.json()["items"]] == [accepted.json()["verification_id"]]


async def test_two_numeric_codes_of_one_device_share_only_their_prefix_and_carry_no_personal_data(
    world: World,
) -> None:
    device = await world.device("王老五")
    first, second = (await _numeric(world, device))["code"], (await _numeric(world, device))["code"]
    assert first != second
    assert first[4:11] != second[4:11]  # a fresh handle per code
    id_digits = device.ids["id_number"][:17]
    assert not any(id_digits[i : i + 6] in first for i in range(len(id_digits) - 5))


@pytest.mark.parametrize(
    "code",
    [
        "50011234567",
        "5001123456789012345",
        "50011234567890123a",
        "5001-1234567-123456-7",
        "５００１１２３４５６７８９０１２３４",
        " 500112345678901234",
    ],
)
async def test_a_numeric_code_of_the_wrong_length_or_with_non_digits_is_malformed(world: World, code: str) -> None:
    library = await world.merchant(["wl-030"])
    assert problem(await world.verify(library, code)) == (400, "malformed_code")


async def test_a_mistyped_digit_is_caught_by_the_check_digit_and_leaves_the_code_usable(world: World) -> None:
    library = await world.merchant(["wl-030"])
    device = await world.device()
    code = (await _numeric(world, device))["code"]
    typo = code[:8] + str((int(code[8]) + 1) % 10) + code[9:]
    assert problem(await world.verify(library, typo)) == (400, "malformed_code")
    assert (await world.verify(library, code)).status_code == 200


async def test_an_unknown_version_or_issuer_is_refused(world: World) -> None:
    library = await world.merchant(["wl-030"])
    assert problem(await world.verify(library, _with_check_digit("50021234567123456"))) == (400, "malformed_code")
    assert problem(await world.verify(library, _with_check_digit("51011234567123456"))) == (400, "unknown_issuer")


async def test_an_expired_numeric_code_is_refused(world: World) -> None:
    library = await world.merchant(["wl-030"])
    device = await world.device()
    code = (await _numeric(world, device))["code"]
    settings = world.app.state.settings
    world.clock.advance(settings.code_ttl_s + settings.clock_skew_s + 1)
    assert problem(await world.verify(library, code)) == (400, "code_expired")


async def test_another_devices_digits_under_a_codes_handle_are_refused(world: World) -> None:
    library = await world.merchant(["wl-030"])
    mine, theirs = await world.device("张小三"), await world.device("李四")
    code = (await _numeric(world, mine))["code"]
    other = (await _numeric(world, theirs))["code"]
    spliced = _with_check_digit(code[:11] + other[11:17])
    assert spliced != code
    assert problem(await world.verify(library, spliced)) == (400, "bad_signature")
    accepted = await world.verify(library, code)
    assert accepted.status_code == 200, accepted.text
    assert (await world.verify(library, other)).status_code == 200


async def test_a_numeric_code_of_a_card_suspended_after_minting_is_refused_and_none_is_minted(world: World) -> None:
    library = await world.merchant(["wl-030"])
    device = await world.device()
    code = (await _numeric(world, device))["code"]
    assert (await world.set_status(device.ids["card_id"], "suspended", "lost")).status_code == 200

    assert problem(await world.verify(library, code)) == (403, "card_suspended")
    refused = await world.signed(device, "POST", "/v1/codes", {"form": "numeric"})
    assert problem(refused) == (403, "card_suspended")


async def test_an_unknown_form_is_an_invalid_request(world: World) -> None:
    device = await world.device()
    answer = await world.signed(device, "POST", "/v1/codes", {"form": "barcode"})
    assert problem(answer) == (400, "invalid_request")


async def test_wrong_guesses_are_throttled_per_terminal(world: World) -> None:
    library = await world.merchant(["wl-030"])
    guesser = await world.terminal(library, "counter-1")
    honest = await world.terminal(library, "counter-2")
    device = await world.device()
    settings = world.app.state.settings
    for guess in range(settings.numeric_guesses):
        wrong = _with_check_digit(f"5001{guess:07d}000000")
        assert problem(await world.verify(guesser, wrong)) == (400, "bad_signature")

    code = (await _numeric(world, device))["code"]
    throttled = await world.verify(guesser, code)
    assert problem(throttled) == (429, "too_many_requests")
    assert int(throttled.headers["retry-after"]) > 0
    # the throttle is the guesser's: the holder's code was not used up, another terminal takes it
    assert (await world.verify(honest, code)).status_code == 200

    world.clock.advance(settings.numeric_guess_window_s)
    fresh = (await _numeric(world, device))["code"]
    assert (await world.verify(guesser, fresh)).status_code == 200


async def test_the_devices_totp_secret_is_sealed_at_rest_and_bound_to_the_device(world: World) -> None:
    device, other = await world.device(), await world.device()
    await _numeric(world, device)
    sealed = await world.app.state.pool.fetchval(
        "SELECT secret_sealed FROM device_totp_secrets WHERE device_id = $1", device.ids["device_id"]
    )
    keys = world.app.state.secret_keys
    assert len(keys.unwrap_secret(sealed, f"totp:{device.ids['device_id']}")) == 20
    with pytest.raises(SealError):
        keys.unwrap_secret(sealed, f"totp:{other.ids['device_id']}")
