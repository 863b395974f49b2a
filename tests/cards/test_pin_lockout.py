"""One PIN lockout for payments and PIN changes; PIN hashes from before the pepper, re-made at the next right PIN."""

from __future__ import annotations

import asyncio

import argon2

from ecard.kit.crypto import Keys
from ecard.kit.principal import ClientKind, Principal
from tests.payments import conftest as payments
from tests.payments.conftest import PIN, Shop
from tests.support import Actor, World, problem

# the payments tests' stand-in bank, merchant server and shop, for this module too
bank = payments.bank
settings = payments.settings
merchant_server = payments.merchant_server
shop = payments.shop

NEW_PIN = "915264"
WRONG = "246801"


async def change_pin(world: World, device: Actor, current: str | None, new: str = NEW_PIN) -> int:
    body = {"pin": new} if current is None else {"pin": new, "current_pin": current}
    answer = await world.signed(device, "PUT", f"/v1/devices/{device.ids['device_id']}/pin", body)
    return answer.status_code


async def test_wrong_pins_at_payment_lock_the_pin_change_too(world: World, shop: Shop) -> None:
    merchant = await shop.merchant()
    device = await shop.payer(10_000)
    bill = await shop.bill(merchant, 1_000)
    for left in (4, 3):
        answer = await shop.pay(device, bill["bill_id"], pin=WRONG)
        assert answer.json()["attempts_left"] == left

    # the change sees the count the payments left
    third = await world.signed(
        device, "PUT", f"/v1/devices/{device.ids['device_id']}/pin", {"pin": NEW_PIN, "current_pin": WRONG}
    )
    assert problem(third) == (403, "pin_incorrect")
    assert third.json()["attempts_left"] == 2
    assert (await shop.pay(device, bill["bill_id"], pin=WRONG)).json()["attempts_left"] == 1
    assert problem(await shop.pay(device, bill["bill_id"], pin=WRONG)) == (423, "pin_locked")

    assert await change_pin(world, device, PIN) == 423
    assert await shop.bank.balance(device.ids["card_id"]) == 10_000


async def test_wrong_pins_at_a_pin_change_lock_payments_too(world: World, shop: Shop) -> None:
    merchant = await shop.merchant()
    device = await shop.payer(10_000)
    bill = await shop.bill(merchant, 1_000)
    for _ in range(5):
        await change_pin(world, device, WRONG)

    assert problem(await shop.pay(device, bill["bill_id"])) == (423, "pin_locked")
    assert await shop.bank.balance(device.ids["card_id"]) == 10_000
    assert await shop.status(merchant, bill["bill_id"]) == "pending"


async def test_concurrent_wrong_pins_across_payments_and_changes_cannot_get_past_the_limit(
    world: World, shop: Shop
) -> None:
    merchant = await shop.merchant()
    device = await shop.payer(10_000)
    bills = [await shop.bill(merchant, 1_000) for _ in range(6)]

    guesses = [shop.pay(device, bill["bill_id"], pin=f"{i:06d}") for i, bill in enumerate(bills, start=11)]
    changes = [change_pin(world, device, f"{i:06d}") for i in range(31, 37)]
    await asyncio.gather(*guesses, *changes)

    checked = await world.app.state.pool.fetchval(
        "SELECT count(*) FROM audit_log WHERE action IN"
        " ('payment.pin_incorrect', 'payment.pin_locked', 'pin_change.pin_incorrect', 'pin_change.pin_locked')"
    )
    assert checked == 5
    assert problem(await shop.pay(device, bills[0]["bill_id"])) == (423, "pin_locked")


async def _make_legacy(world: World, device: Actor, pin: str) -> str:
    """The device's hash as a release before the pepper stored it: Argon2id of the bare PIN."""
    legacy = argon2.PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1).hash(pin)
    await world.app.state.pool.execute(
        "UPDATE devices SET pin_hash = $2, pin_pepper = 0 WHERE device_id = $1", device.ids["device_id"], legacy
    )
    return legacy


async def _stored(world: World, device: Actor) -> tuple[str, int]:
    row = await world.app.state.pool.fetchrow(
        "SELECT pin_hash, pin_pepper FROM devices WHERE device_id = $1", device.ids["device_id"]
    )
    return row["pin_hash"], row["pin_pepper"]


async def test_a_pin_hash_from_before_the_pepper_pays_and_is_re_made_peppered(world: World, shop: Shop) -> None:
    merchant = await shop.merchant()
    device = await shop.payer(10_000)
    legacy = await _make_legacy(world, device, PIN)

    # a wrong PIN leaves the old hash as it is
    assert problem(await shop.pay(device, (await shop.bill(merchant, 100))["bill_id"], pin=WRONG))[1] == (
        "pin_incorrect"
    )
    assert await _stored(world, device) == (legacy, 0)
    answer = await shop.pay(device, (await shop.bill(merchant, 100))["bill_id"])

    assert answer.status_code == 200, answer.text
    stored, pepper = await _stored(world, device)
    assert pepper == 1
    assert stored != legacy
    keys: Keys = world.app.state.secret_keys
    assert argon2.PasswordHasher().verify(stored, keys.pin_secret(PIN))
    # and the re-made hash keeps working
    assert (await shop.pay(device, (await shop.bill(merchant, 100))["bill_id"])).status_code == 200


async def test_a_pin_hash_from_before_the_pepper_still_changes_with_the_current_pin(world: World) -> None:
    device = await world.device()
    assert (
        await world.signed(device, "PUT", f"/v1/devices/{device.ids['device_id']}/pin", {"pin": PIN})
    ).status_code == 204
    await _make_legacy(world, device, PIN)

    assert await change_pin(world, device, WRONG) == 403
    assert await change_pin(world, device, PIN) == 204

    stored, pepper = await _stored(world, device)
    keys: Keys = world.app.state.secret_keys
    assert pepper == 1
    assert argon2.PasswordHasher().verify(stored, keys.pin_secret(NEW_PIN))


async def test_check_pin_is_the_one_check_for_every_purpose(world: World) -> None:
    device = await world.device()
    assert (
        await world.signed(device, "PUT", f"/v1/devices/{device.ids['device_id']}/pin", {"pin": PIN})
    ).status_code == 204
    principal = Principal(device.key_id, ClientKind.DEVICE, device.ids["device_id"], device.ids["card_id"])
    cards = world.app.state.cards

    await cards.check_pin(principal, device.ids["card_id"], PIN, purpose="portal_login", subject="lgn_1")

    actions = await world.app.state.pool.fetch("SELECT action, subject FROM audit_log WHERE action LIKE 'portal%'")
    assert [(r["action"], r["subject"]) for r in actions] == [("portal_login.pin_correct", "lgn_1")]
