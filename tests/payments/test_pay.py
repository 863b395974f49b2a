"""Paying with the PIN: money moves once, lockout after five wrong PINs, refusals that keep the bill payable."""

from __future__ import annotations

import asyncio
import datetime as dt

import asyncpg

from ecard.payments import check
from tests.payments.conftest import PIN, WATER, Shop
from tests.support import World, problem


async def _rows(world: World, query: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(world.app.state.settings.database_url)
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


async def test_a_citizen_pays_a_bill_with_the_pin(world: World, shop: Shop) -> None:
    merchant = await shop.merchant()
    device = await shop.payer(10_000)
    bill = await shop.bill(merchant, 4_250)
    answer = await shop.pay(device, bill["bill_id"])
    assert answer.status_code == 200, answer.text
    paid = answer.json()
    assert paid["status"] == "paid"
    assert paid["transaction_id"]
    assert paid["paid_at"]
    assert await shop.bank.balance(device.ids["card_id"]) == 5_750
    seen = (await world.signed(merchant, "GET", f"/v1/bills/{bill['bill_id']}")).json()
    assert seen["status"] == "paid"
    assert seen["transaction_id"] == paid["transaction_id"]
    assert (await world.signed(device, "GET", f"/v1/bills/{bill['bill_id']}")).json()["status"] == "paid"
    # paid once: a second pay is refused and moves nothing
    assert problem(await shop.pay(device, bill["bill_id"])) == (409, "bill_not_payable")
    assert await shop.bank.balance(device.ids["card_id"]) == 5_750
    assert await check(world.app.state.pool) == []


async def test_concurrent_pays_make_one_payment_and_one_bank_debit(world: World, shop: Shop) -> None:
    merchant = await shop.merchant()
    device = await shop.payer(10_000)
    bill = await shop.bill(merchant, 3_000)
    answers = await asyncio.gather(*(shop.pay(device, bill["bill_id"]) for _ in range(8)))
    statuses = sorted(a.status_code for a in answers)
    assert statuses.count(200) == 1, [a.text for a in answers]
    # refused while the winner is under way (ask again later), or once it has paid
    refused = [a for a in answers if a.status_code != 200]
    assert {problem(a) for a in refused} <= {(409, "payment_in_progress"), (409, "bill_not_payable")}
    assert all(int(a.headers["retry-after"]) >= 1 for a in refused if problem(a)[1] == "payment_in_progress")
    assert await shop.bank.balance(device.ids["card_id"]) == 7_000
    attempts = await _rows(world, "SELECT state FROM payment_attempts WHERE bill_id = $1", bill["bill_id"])
    assert [r["state"] for r in attempts] == ["succeeded"]


async def test_five_wrong_pins_lock_the_cards_payments_for_thirty_minutes(world: World, shop: Shop) -> None:
    merchant = await shop.merchant()
    device = await shop.payer(10_000)
    bill = await shop.bill(merchant, 1_000)
    for left in (4, 3, 2, 1):
        answer = await shop.pay(device, bill["bill_id"], pin="246801")
        assert problem(answer) == (403, "pin_incorrect")
        assert answer.json()["attempts_left"] == left
    fifth = await shop.pay(device, bill["bill_id"], pin="246801")
    assert problem(fifth) == (423, "pin_locked")
    # even the right PIN is refused while locked, for any bill of the card
    assert problem(await shop.pay(device, bill["bill_id"])) == (423, "pin_locked")
    other = await shop.bill(merchant, 500)
    assert problem(await shop.pay(device, other["bill_id"])) == (423, "pin_locked")
    assert await shop.bank.balance(device.ids["card_id"]) == 10_000
    world.clock.advance(29 * 60)
    assert problem(await shop.pay(device, bill["bill_id"])) == (423, "pin_locked")
    world.clock.advance(61)
    answer = await shop.pay(device, bill["bill_id"])
    assert answer.status_code == 200, answer.text
    assert await shop.bank.balance(device.ids["card_id"]) == 9_000
    # every attempt is audited, without the PIN
    audited = await _rows(
        world, "SELECT action, detail::text AS detail FROM audit_log WHERE action LIKE 'payment.pin%' ORDER BY entry_id"
    )
    actions = [r["action"] for r in audited]
    assert actions.count("payment.pin_incorrect") == 4
    assert actions.count("payment.pin_locked") == 1
    assert actions.count("payment.pin_refused_locked") == 3
    assert actions[-1] == "payment.pin_correct"
    assert not any(PIN in r["detail"] or "246801" in r["detail"] for r in audited)
    assert await world.audit_intact()


async def test_concurrent_wrong_pins_cannot_get_past_the_limit(world: World, shop: Shop) -> None:
    merchant = await shop.merchant()
    device = await shop.payer(10_000)
    bills = [await shop.bill(merchant, 1_000) for _ in range(12)]
    answers = await asyncio.gather(
        *(shop.pay(device, bill["bill_id"], pin=f"{i:06d}") for i, bill in enumerate(bills, start=11))
    )
    codes = [problem(a)[1] for a in answers]
    assert codes.count("pin_incorrect") == 4
    assert codes.count("pin_locked") == 8
    checked = await _rows(
        world, "SELECT count(*) AS n FROM audit_log WHERE action IN ('payment.pin_incorrect', 'payment.pin_locked')"
    )
    assert checked[0]["n"] == 5


async def test_a_right_pin_resets_the_count(world: World, shop: Shop) -> None:
    merchant = await shop.merchant()
    device = await shop.payer(10_000)
    for _ in range(4):
        assert problem(await shop.pay(device, (await shop.bill(merchant, 100))["bill_id"], pin="975310"))[1] == (
            "pin_incorrect"
        )
    assert (await shop.pay(device, (await shop.bill(merchant, 100))["bill_id"])).status_code == 200
    answer = await shop.pay(device, (await shop.bill(merchant, 100))["bill_id"], pin="975310")
    assert answer.json()["attempts_left"] == 4


async def test_no_money_is_402_and_the_bill_stays_payable(world: World, shop: Shop) -> None:
    merchant = await shop.merchant()
    device = await shop.payer(1_000)
    bill = await shop.bill(merchant, 4_250)
    assert problem(await shop.pay(device, bill["bill_id"])) == (402, "insufficient_funds")
    assert await shop.status(merchant, bill["bill_id"]) == "pending"
    await shop.bank.credit(device.ids["card_id"], 5_000)
    answer = await shop.pay(device, bill["bill_id"])
    assert answer.status_code == 200, answer.text
    assert await shop.bank.balance(device.ids["card_id"]) == 1_750


async def test_a_suspended_or_cancelled_card_cannot_pay(world: World, shop: Shop) -> None:
    merchant = await shop.merchant()
    device = await shop.payer(10_000)
    bill = await shop.bill(merchant, 1_000)
    assert (await world.set_status(device.ids["card_id"], "suspended")).status_code == 200
    assert problem(await shop.pay(device, bill["bill_id"])) == (403, "card_suspended")
    assert (await world.set_status(device.ids["card_id"], "cancelled")).status_code == 200
    assert problem(await shop.pay(device, bill["bill_id"])) == (403, "card_cancelled")
    assert await shop.bank.balance(device.ids["card_id"]) == 10_000
    assert await shop.status(merchant, bill["bill_id"]) == "pending"


async def test_only_devices_pay_and_bodies_are_checked(world: World, shop: Shop) -> None:
    merchant = await shop.merchant()
    device = await shop.payer(10_000)
    bill = await shop.bill(merchant, 1_000)
    as_merchant = await world.signed(merchant, "POST", f"/v1/bills/{bill['bill_id']}/pay", {"pin": PIN})
    assert problem(as_merchant) == (403, "forbidden")
    for body in [{}, {"pin": 135790}, {"pin": PIN, "amount_fen": 1}, []]:
        answer = await world.signed(device, "POST", f"/v1/bills/{bill['bill_id']}/pay", body)
        assert problem(answer) == (400, "invalid_request"), body
    assert problem(await shop.pay(device, "bil_none")) == (404, "not_found")
    assert await shop.bank.balance(device.ids["card_id"]) == 10_000


async def test_paid_bills_bring_the_items_payment_depth_to_level_2(world: World, shop: Shop) -> None:
    async def payment_level() -> tuple[int, str | None]:
        answer = await world.admin("GET", "/v1/admin/depth")
        assert answer.status_code == 200, answer.text
        item = next(i for i in answer.json()["items"] if i["item_code"] == "wl-043")
        return item["levels"]["payment"], item["note"]

    merchant = await shop.merchant()
    assert (await payment_level())[0] == 1
    device = await shop.payer(10_000)
    unpaid = await shop.bill(merchant, 100)
    assert (await payment_level())[0] == 1
    assert (await shop.pay(device, unpaid["bill_id"])).status_code == 200
    level, note = await payment_level()
    assert level == 2
    assert note is None or "payment level 2" not in note
    # the window is 30 days: a month later, without new payments, the item is back at level 1
    world.clock.advance(31 * 86_400)
    assert (await payment_level())[0] == 1


async def test_a_disabled_merchants_bill_cannot_be_paid_until_it_is_enabled_again(world: World, shop: Shop) -> None:
    merchant = await shop.merchant()
    device = await shop.payer(10_000)
    bill = await shop.bill(merchant, 1_000)
    status_path = f"/v1/admin/merchants/{merchant.ids['merchant_id']}/status"
    assert (await world.admin("POST", status_path, {"status": "disabled"})).status_code == 200
    refused = await shop.pay(device, bill["bill_id"])
    assert problem(refused) == (409, "bill_not_payable")
    assert "merchant" in refused.json()["detail"]
    assert await shop.bank.balance(device.ids["card_id"]) == 10_000
    # nothing was claimed: the bill is still waiting to be paid
    assert (await world.signed(device, "GET", f"/v1/bills/{bill['bill_id']}")).json()["status"] == "pending"
    assert (await world.admin("POST", status_path, {"status": "active"})).status_code == 200
    answer = await shop.pay(device, bill["bill_id"])
    assert answer.status_code == 200, answer.text
    assert await shop.bank.balance(device.ids["card_id"]) == 9_000


async def test_a_bill_whose_merchant_lost_the_entitlement_cannot_be_paid(world: World, shop: Shop) -> None:
    merchant = await shop.merchant()
    device = await shop.payer(10_000)
    bill = await shop.bill(merchant, 1_000)
    items = await world.admin("PUT", f"/v1/admin/merchants/{merchant.ids['merchant_id']}/items", {"items": ["wl-028"]})
    assert items.status_code == 200, items.text
    assert problem(await shop.pay(device, bill["bill_id"])) == (403, "merchant_not_entitled")
    assert await shop.bank.balance(device.ids["card_id"]) == 10_000
    assert await shop.status(merchant, bill["bill_id"]) == "pending"


async def test_a_bill_for_an_item_no_longer_in_force_cannot_be_paid(world: World, shop: Shop) -> None:
    merchant = await shop.merchant()
    device = await shop.payer(10_000)
    bill = await shop.bill(merchant, 1_000)
    item = (await world.client.get(f"/v1/catalog/items/{WATER}")).json()
    kept = ("name", "domain", "lead_department", "functions", "card_modes", "regions", "discloses", "effective_from")
    fields = {k: item[k] for k in kept}
    yesterday = dt.datetime.fromtimestamp(world.clock.now() - 86_400, dt.UTC).date().isoformat()
    retired = await world.admin("PUT", f"/v1/admin/catalog/items/{WATER}", {**fields, "effective_to": yesterday})
    assert retired.status_code == 200, retired.text
    assert problem(await shop.pay(device, bill["bill_id"])) == (403, "merchant_not_entitled")
    assert await shop.bank.balance(device.ids["card_id"]) == 10_000
