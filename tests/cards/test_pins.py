"""The payment PIN: set once as API.md shows, changed only with the current one, reset only after a channel's
real-name check, never on a suspended or cancelled card; every change audited and told to the holder."""

from __future__ import annotations

import hashlib
from typing import Any

import argon2
import pytest

from ecard.kit.crypto import Keys
from ecard.kit.ids import new_id
from tests.support import Actor, World, problem

PIN = "480273"
NEW_PIN = "915264"


async def put_pin(world: World, device: Actor, body: dict[str, Any], device_id: str | None = None) -> Any:
    return await world.signed(device, "PUT", f"/v1/devices/{device_id or device.ids['device_id']}/pin", body)


async def stored_pin(world: World, device: Actor) -> tuple[str | None, int]:
    row = await world.app.state.pool.fetchrow(
        "SELECT pin_hash, pin_pepper FROM devices WHERE device_id = $1", device.ids["device_id"]
    )
    return row["pin_hash"], row["pin_pepper"]


def keys(world: World) -> Keys:
    secret_keys: Keys = world.app.state.secret_keys
    return secret_keys


def holds(world: World, stored: str | None, pin: str) -> bool:
    """Whether a stored hash is of this PIN, peppered as the service peppers it."""
    assert stored is not None
    try:
        return argon2.PasswordHasher().verify(stored, keys(world).pin_secret(pin))
    except argon2.exceptions.VerifyMismatchError:
        return False


async def with_pin(world: World, pin: str = PIN) -> Actor:
    device = await world.device()
    answer = await put_pin(world, device, {"pin": pin})
    assert answer.status_code == 204, answer.text
    return device


async def notices(world: World, device: Actor) -> list[dict[str, Any]]:
    answer = await world.signed(device, "GET", f"/v1/cards/{device.ids['card_id']}/notices")
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


async def audited(world: World, action_like: str) -> list[dict[str, Any]]:
    rows = await world.app.state.pool.fetch(
        "SELECT actor, action, subject, detail::text AS detail FROM audit_log WHERE action LIKE $1 ORDER BY entry_id",
        action_like,
    )
    return [dict(r) for r in rows]


async def grant(world: World, channel: Actor, device: Actor, **person: str) -> Any:
    body = {"id_number": device.ids["id_number"], "name": device.ids["name"], **person}
    return await world.signed(channel, "POST", f"/v1/devices/{device.ids['device_id']}/pin-reset", body)


async def reset_token(world: World, device: Actor) -> str:
    answer = await grant(world, await world.channel(), device)
    assert answer.status_code == 201, answer.text
    token: str = answer.json()["reset_token"]
    return token


# --- the first PIN, exactly as API.md shows it ------------------------------------------------------------


async def test_a_device_sets_its_first_pin_with_the_request_api_md_shows(world: World) -> None:
    phone = await world.device()

    answer = await put_pin(world, phone, {"pin": PIN})

    assert answer.status_code == 204, answer.text
    assert answer.content == b""
    stored, pepper = await stored_pin(world, phone)
    assert stored is not None
    assert stored.startswith("$argon2id$")
    assert PIN not in stored
    assert holds(world, stored, PIN)
    assert pepper == 1


async def test_a_stored_pin_hash_cannot_be_searched_without_the_server_key(world: World) -> None:
    phone = await with_pin(world)

    stored, _ = await stored_pin(world, phone)

    # what an offline search of a stolen database would try: Argon2 of the six digits alone
    assert stored is not None
    with pytest.raises(argon2.exceptions.VerifyMismatchError):
        argon2.PasswordHasher().verify(stored, PIN)
    other_server = Keys.from_master(b"\x07" * 32)
    with pytest.raises(argon2.exceptions.VerifyMismatchError):
        argon2.PasswordHasher().verify(stored, other_server.pin_secret(PIN))


@pytest.mark.parametrize(
    "pin",
    ["48027", "4802731", "48a273", "abcdef", "", "000000", "111111", "123456", "654321", "４８０２７３", 480273],
    ids=[
        "five-digits",
        "seven-digits",
        "a-letter",
        "letters",
        "empty",
        "all-zeros",
        "all-ones",
        "ascending",
        "descending",
        "full-width-digits",
        "a-number-not-a-string",
    ],
)
async def test_a_pin_that_is_not_six_guessable_digits_is_refused(world: World, pin: Any) -> None:
    phone = await world.device()

    answer = await put_pin(world, phone, {"pin": pin})

    assert problem(answer) == (400, "invalid_request")
    assert "pin" in answer.json()["fields"]
    assert (await stored_pin(world, phone))[0] is None


async def test_a_device_cannot_set_another_devices_pin(world: World) -> None:
    victim = await world.device("张小三")
    intruder = await world.device("李四")

    answer = await put_pin(world, intruder, {"pin": PIN}, device_id=victim.ids["device_id"])

    assert problem(answer) == (403, "forbidden")
    assert (await stored_pin(world, victim))[0] is None
    assert (await stored_pin(world, intruder))[0] is None


async def test_a_merchant_cannot_set_a_devices_pin(world: World) -> None:
    phone = await world.device()
    merchant = await world.merchant(["wl-030"])

    answer = await put_pin(world, merchant, {"pin": PIN}, device_id=phone.ids["device_id"])

    assert problem(answer) == (403, "forbidden")
    assert (await stored_pin(world, phone))[0] is None


# --- changing a PIN needs the current one -----------------------------------------------------------------


async def test_a_pin_cannot_be_changed_without_the_current_one(world: World) -> None:
    phone = await with_pin(world)
    before, _ = await stored_pin(world, phone)

    answer = await put_pin(world, phone, {"pin": NEW_PIN})

    assert problem(answer) == (403, "pin_incorrect")
    # no guess was made, so none was counted
    assert answer.json()["attempts_left"] == 5
    assert problem(await put_pin(world, phone, {"pin": NEW_PIN}))[1] == "pin_incorrect"
    assert (await put_pin(world, phone, {"pin": NEW_PIN})).json()["attempts_left"] == 5
    assert (await stored_pin(world, phone))[0] == before


async def test_a_wrong_current_pin_is_refused_and_counted(world: World) -> None:
    phone = await with_pin(world)
    before, _ = await stored_pin(world, phone)

    for left in (4, 3):
        answer = await put_pin(world, phone, {"pin": NEW_PIN, "current_pin": "246801"})
        assert problem(answer) == (403, "pin_incorrect")
        assert answer.json()["attempts_left"] == left

    assert (await stored_pin(world, phone))[0] == before
    assert (await put_pin(world, phone, {"pin": NEW_PIN})).json()["attempts_left"] == 3
    checks = await audited(world, "pin_change.%")
    assert [c["action"] for c in checks] == ["pin_change.pin_incorrect"] * 2
    assert not any("246801" in c["detail"] or PIN in c["detail"] for c in checks)


async def test_five_wrong_current_pins_lock_the_pin_for_thirty_minutes(world: World) -> None:
    phone = await with_pin(world)
    for _ in range(4):
        assert problem(await put_pin(world, phone, {"pin": NEW_PIN, "current_pin": "246801"}))[1] == "pin_incorrect"

    fifth = await put_pin(world, phone, {"pin": NEW_PIN, "current_pin": "246801"})

    assert problem(fifth) == (423, "pin_locked")
    # the right PIN does not get through the lock, nor does leaving it out
    assert problem(await put_pin(world, phone, {"pin": NEW_PIN, "current_pin": PIN})) == (423, "pin_locked")
    assert problem(await put_pin(world, phone, {"pin": NEW_PIN})) == (423, "pin_locked")
    world.clock.advance(29 * 60)
    assert problem(await put_pin(world, phone, {"pin": NEW_PIN, "current_pin": PIN})) == (423, "pin_locked")
    world.clock.advance(61)
    assert (await put_pin(world, phone, {"pin": NEW_PIN, "current_pin": PIN})).status_code == 204
    assert holds(world, (await stored_pin(world, phone))[0], NEW_PIN)
    assert "pin_locked" in [n["kind"] for n in await notices(world, phone)]


async def test_a_count_left_above_the_limit_without_a_lock_locks_for_thirty_minutes_only(world: World) -> None:
    phone = await with_pin(world)
    # what a fifth check that never finished leaves behind: counted, never locked
    await world.app.state.pool.execute(
        "INSERT INTO pin_guards (card_id, failures) VALUES ($1, 5)"
        " ON CONFLICT (card_id) DO UPDATE SET failures = 5, locked_until = NULL",
        phone.ids["card_id"],
    )

    assert problem(await put_pin(world, phone, {"pin": NEW_PIN, "current_pin": PIN})) == (423, "pin_locked")

    world.clock.advance(30 * 60 + 1)
    assert (await put_pin(world, phone, {"pin": NEW_PIN, "current_pin": PIN})).status_code == 204


async def test_the_right_current_pin_changes_the_pin(world: World) -> None:
    phone = await with_pin(world)

    answer = await put_pin(world, phone, {"pin": NEW_PIN, "current_pin": PIN})

    assert answer.status_code == 204, answer.text
    stored, _ = await stored_pin(world, phone)
    assert holds(world, stored, NEW_PIN)
    assert not holds(world, stored, PIN)
    # the old PIN no longer changes it
    assert problem(await put_pin(world, phone, {"pin": "370182", "current_pin": PIN}))[1] == "pin_incorrect"


async def test_a_malformed_current_pin_is_refused_as_invalid_and_not_counted(world: World) -> None:
    phone = await with_pin(world)

    answer = await put_pin(world, phone, {"pin": NEW_PIN, "current_pin": "12"})

    assert problem(answer) == (400, "invalid_request")
    assert answer.json()["fields"] == ["current_pin"]
    assert (await put_pin(world, phone, {"pin": NEW_PIN})).json()["attempts_left"] == 5


async def test_an_unknown_field_or_both_ways_at_once_is_invalid(world: World) -> None:
    phone = await with_pin(world)

    unknown = await put_pin(world, phone, {"pin": NEW_PIN, "old_pin": PIN})
    both = await put_pin(world, phone, {"pin": NEW_PIN, "current_pin": PIN, "reset_token": "prt_x"})

    assert problem(unknown) == (400, "invalid_request")
    assert problem(both) == (400, "invalid_request")
    assert set(both.json()["fields"]) == {"current_pin", "reset_token"}
    assert holds(world, (await stored_pin(world, phone))[0], PIN)


async def test_a_refused_new_pin_keeps_the_pin_already_set_and_counts_nothing(world: World) -> None:
    phone = await with_pin(world)

    assert problem(await put_pin(world, phone, {"pin": "123456", "current_pin": "000001"})) == (
        400,
        "invalid_request",
    )

    assert holds(world, (await stored_pin(world, phone))[0], PIN)
    assert (await put_pin(world, phone, {"pin": NEW_PIN})).json()["attempts_left"] == 5


# --- no change on a suspended or cancelled card ------------------------------------------------------------


@pytest.mark.parametrize("status", ["suspended", "cancelled"])
async def test_no_pin_is_set_or_changed_on_a_suspended_or_cancelled_card(world: World, status: str) -> None:
    first = await world.device("张小三")
    changing = await with_pin(world)
    before, _ = await stored_pin(world, changing)
    for phone in (first, changing):
        assert (await world.set_status(phone.ids["card_id"], status)).status_code == 200

    set_first = await put_pin(world, first, {"pin": PIN})
    change = await put_pin(world, changing, {"pin": NEW_PIN, "current_pin": PIN})

    assert problem(set_first) == (403, f"card_{status}")
    assert problem(change) == (403, f"card_{status}")
    assert (await stored_pin(world, first))[0] is None
    assert (await stored_pin(world, changing))[0] == before
    # nothing was checked, so nothing was counted
    assert await audited(world, "pin_change.%") == []


async def test_a_retired_device_cannot_change_the_pin(world: World) -> None:
    old = await with_pin(world)
    channel = await world.channel()
    again = await world.signed(
        channel,
        "POST",
        "/v1/enrolments",
        {"id_number": old.ids["id_number"], "name": old.ids["name"], "device_public_key": old.jwk},
    )
    assert again.status_code == 201, again.text

    answer = await put_pin(world, old, {"pin": NEW_PIN, "current_pin": PIN})

    assert problem(answer) == (403, "client_disabled")


# --- a forgotten PIN: reset through a channel's fresh real-name check ---------------------------------------


async def test_a_channel_grants_a_reset_after_its_real_name_check_and_the_device_sets_a_new_pin(world: World) -> None:
    phone = await with_pin(world)
    channel = await world.channel()

    granted = await grant(world, channel, phone)

    assert granted.status_code == 201, granted.text
    body = granted.json()
    assert set(body) == {"reset_token", "expires_at"}
    assert body["reset_token"].startswith("prt_")
    answer = await put_pin(world, phone, {"pin": NEW_PIN, "reset_token": body["reset_token"]})
    assert answer.status_code == 204, answer.text
    assert holds(world, (await stored_pin(world, phone))[0], NEW_PIN)
    # only a hash of the grant is kept
    kept = await world.app.state.pool.fetch("SELECT token_hash, device_id, channel_id FROM pin_resets")
    assert [bytes(r["token_hash"]) for r in kept] == [hashlib.sha256(body["reset_token"].encode()).digest()]
    assert body["reset_token"] not in str([dict(r) for r in kept])


async def test_a_reset_also_lifts_a_lockout(world: World) -> None:
    phone = await with_pin(world)
    for _ in range(5):
        await put_pin(world, phone, {"pin": NEW_PIN, "current_pin": "246801"})
    assert problem(await put_pin(world, phone, {"pin": NEW_PIN, "current_pin": PIN}))[1] == "pin_locked"

    answer = await put_pin(world, phone, {"pin": NEW_PIN, "reset_token": await reset_token(world, phone)})

    assert answer.status_code == 204, answer.text
    assert (await put_pin(world, phone, {"pin": "370182", "current_pin": NEW_PIN})).status_code == 204


@pytest.mark.parametrize(
    "person",
    [{"name": "张小四"}, {"id_number": "110101199003070011"}, {"name": " "}],
    ids=["another-name", "another-id-number", "no-name"],
)
async def test_a_reset_is_refused_when_the_person_checked_is_not_the_cardholder(
    world: World, person: dict[str, str]
) -> None:
    phone = await with_pin(world)
    channel = await world.channel()

    answer = await grant(world, channel, phone, **person)

    assert problem(answer) == (403, "identity_mismatch")
    assert phone.ids["name"] not in answer.text
    assert phone.ids["id_number"] not in answer.text
    assert await world.app.state.pool.fetchval("SELECT count(*) FROM pin_resets") == 0


async def test_someone_elses_real_name_check_grants_no_reset_of_this_device(world: World) -> None:
    victim = await with_pin(world)
    attacker = await world.device("李四")
    channel = await world.channel()

    answer = await grant(world, channel, victim, id_number=attacker.ids["id_number"], name="李四")

    assert problem(answer) == (403, "identity_mismatch")


async def test_only_a_channel_may_grant_a_reset(world: World) -> None:
    phone = await with_pin(world)
    merchant = await world.merchant(["wl-030"])

    by_device = await grant(world, phone, phone)
    by_merchant = await grant(world, merchant, phone)

    assert problem(by_device) == (403, "forbidden")
    assert problem(by_merchant) == (403, "forbidden")


async def test_a_reset_of_an_unknown_device_is_not_found(world: World) -> None:
    channel = await world.channel()
    body = {"id_number": "110101199003070011", "name": "张小三"}

    for device_id in ("dev_none", new_id("dev"), "dev_%00", "crd_" + "0" * 26):
        answer = await world.signed(channel, "POST", f"/v1/devices/{device_id}/pin-reset", body)
        assert problem(answer) == (404, "not_found"), device_id


@pytest.mark.parametrize("status", ["suspended", "cancelled"])
async def test_no_reset_on_a_suspended_or_cancelled_card(world: World, status: str) -> None:
    phone = await with_pin(world)
    token = await reset_token(world, phone)
    assert (await world.set_status(phone.ids["card_id"], status)).status_code == 200

    granted = await grant(world, await world.channel(), phone)
    used = await put_pin(world, phone, {"pin": NEW_PIN, "reset_token": token})

    assert problem(granted) == (403, f"card_{status}")
    assert problem(used) == (403, f"card_{status}")
    assert holds(world, (await stored_pin(world, phone))[0], PIN)


async def test_a_reset_grant_works_once(world: World) -> None:
    phone = await with_pin(world)
    token = await reset_token(world, phone)
    assert (await put_pin(world, phone, {"pin": NEW_PIN, "reset_token": token})).status_code == 204

    again = await put_pin(world, phone, {"pin": "370182", "reset_token": token})

    assert problem(again) == (403, "pin_reset_invalid")
    assert holds(world, (await stored_pin(world, phone))[0], NEW_PIN)


async def test_a_reset_grant_expires_after_five_minutes(world: World) -> None:
    phone = await with_pin(world)
    token = await reset_token(world, phone)

    world.clock.advance(301)
    answer = await put_pin(world, phone, {"pin": NEW_PIN, "reset_token": token})

    assert problem(answer) == (403, "pin_reset_invalid")
    assert holds(world, (await stored_pin(world, phone))[0], PIN)


async def test_a_newer_grant_spends_the_older_one(world: World) -> None:
    phone = await with_pin(world)
    older = await reset_token(world, phone)
    newer = await reset_token(world, phone)

    assert problem(await put_pin(world, phone, {"pin": NEW_PIN, "reset_token": older})) == (403, "pin_reset_invalid")
    assert (await put_pin(world, phone, {"pin": NEW_PIN, "reset_token": newer})).status_code == 204


async def test_a_grant_made_for_one_device_is_refused_to_another_and_is_spent(world: World) -> None:
    phone = await with_pin(world)
    token = await reset_token(world, phone)
    other = await with_pin(world, "370182")

    stolen = await put_pin(world, other, {"pin": NEW_PIN, "reset_token": token})
    after = await put_pin(world, phone, {"pin": NEW_PIN, "reset_token": token})

    assert problem(stolen) == (403, "pin_reset_invalid")
    assert holds(world, (await stored_pin(world, other))[0], "370182")
    # a grant that has been shown to another device has leaked: it is spent
    assert problem(after) == (403, "pin_reset_invalid")
    assert holds(world, (await stored_pin(world, phone))[0], PIN)


async def test_a_made_up_reset_token_is_refused(world: World) -> None:
    phone = await with_pin(world)

    answer = await put_pin(world, phone, {"pin": NEW_PIN, "reset_token": "prt_" + "A" * 43})

    assert problem(answer) == (403, "pin_reset_invalid")
    assert holds(world, (await stored_pin(world, phone))[0], PIN)


# --- audit and notices -----------------------------------------------------------------------------------


async def test_every_set_change_and_reset_is_audited_without_the_pin(world: World) -> None:
    phone = await with_pin(world)
    assert (await put_pin(world, phone, {"pin": NEW_PIN, "current_pin": PIN})).status_code == 204
    token = await reset_token(world, phone)
    assert (await put_pin(world, phone, {"pin": "370182", "reset_token": token})).status_code == 204

    entries = await audited(world, "pin.%")

    assert [e["action"] for e in entries] == ["pin.set", "pin.changed", "pin.reset_granted", "pin.reset"]
    assert all(e["subject"] == phone.ids["card_id"] for e in entries)
    assert entries[0]["actor"] == f"device:{phone.ids['device_id']}"
    text = " ".join(e["detail"] for e in entries)
    for secret in (PIN, NEW_PIN, "370182", token, phone.ids["id_number"], phone.ids["name"]):
        assert secret not in text


async def test_the_holder_is_told_of_every_pin_change_newest_first(world: World) -> None:
    phone = await with_pin(world)
    world.clock.advance(1)
    assert (await put_pin(world, phone, {"pin": NEW_PIN, "current_pin": PIN})).status_code == 204
    world.clock.advance(1)
    channel = await world.channel()
    token = (await grant(world, channel, phone)).json()["reset_token"]
    world.clock.advance(1)
    assert (await put_pin(world, phone, {"pin": "370182", "reset_token": token})).status_code == 204

    items = await notices(world, phone)

    assert [n["kind"] for n in items] == ["pin_reset", "pin_reset_requested", "pin_changed", "pin_set"]
    assert {"notice_id", "kind", "detail", "created_at"} == set(items[0])
    assert items[0]["detail"]["channel_id"] == channel.ids["channel_id"]
    assert items[1]["detail"]["channel_id"] == channel.ids["channel_id"]
    assert items[0]["created_at"] > items[-1]["created_at"]
    text = str(items)
    for secret in (PIN, NEW_PIN, "370182", token, phone.ids["id_number"], phone.ids["name"]):
        assert secret not in text


async def test_notices_are_refused_to_another_cards_device_and_to_merchants(world: World) -> None:
    victim = await with_pin(world)
    intruder = await world.device("李四")
    merchant = await world.merchant(["wl-030"])

    by_intruder = await world.signed(intruder, "GET", f"/v1/cards/{victim.ids['card_id']}/notices")
    by_merchant = await world.signed(merchant, "GET", f"/v1/cards/{victim.ids['card_id']}/notices")

    assert problem(by_intruder) == (403, "forbidden")
    assert problem(by_merchant) == (403, "forbidden")
    assert "pin_set" not in by_intruder.text
    assert await notices(world, intruder) == []


async def test_a_notice_raised_inside_a_callers_transaction_goes_with_it(world: World) -> None:
    phone = await world.device()
    cards = world.app.state.cards

    async with world.app.state.pool.acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        await cards.notify(phone.ids["card_id"], "test_kind", {"n": 1}, conn=conn)
        await transaction.rollback()
    await cards.notify(phone.ids["card_id"], "kept_kind", {"n": 2})

    assert [(n["kind"], n["detail"]) for n in await notices(world, phone)] == [("kept_kind", {"n": 2})]
