"""Bills: creation idempotent on out_bill_no (also under a burst of duplicates), entitlement, queries, close, QR."""

from __future__ import annotations

import asyncio

import asyncpg

from tests.payments.conftest import WATER, MerchantServer, Shop, until
from tests.support import World, ed25519_actor, problem


async def test_a_merchant_creates_a_bill_and_gets_the_pull_up_link(world: World, shop: Shop) -> None:
    merchant = await shop.merchant()
    body = shop.bill_body(4_250)
    answer = await shop.create(merchant, body)
    assert answer.status_code == 201, answer.text
    bill = answer.json()
    assert bill["status"] == "pending"
    assert bill["pull_up_url"] == f"ecard://pay?bill_id={bill['bill_id']}"
    assert bill["amount_fen"] == 4_250
    assert bill["expires_at"] > bill["created_at"]

    by_id = await world.signed(merchant, "GET", f"/v1/bills/{bill['bill_id']}")
    assert by_id.status_code == 200
    assert by_id.json()["out_bill_no"] == body["out_bill_no"]
    by_number = await world.signed(merchant, "GET", f"/v1/bills?out_bill_no={body['out_bill_no']}")
    assert by_number.status_code == 200
    assert by_number.json()["bill_id"] == bill["bill_id"]


async def test_the_same_number_and_body_answer_the_same_bill_and_another_body_conflicts(
    world: World, shop: Shop
) -> None:
    merchant = await shop.merchant()
    body = shop.bill_body(4_250)
    first = await shop.create(merchant, body)
    again = await shop.create(merchant, body)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["bill_id"] == first.json()["bill_id"]
    changed = await shop.create(merchant, {**body, "amount_fen": 4_251})
    assert problem(changed) == (409, "idempotency_conflict")
    # another merchant may use the same number for a bill of its own
    other = await shop.merchant(name="重庆燃气")
    theirs = await shop.create(other, body)
    assert theirs.status_code == 201
    assert theirs.json()["bill_id"] != first.json()["bill_id"]


async def test_two_hundred_concurrent_duplicates_make_one_bill(world: World, shop: Shop) -> None:
    merchant = await shop.merchant()
    body = shop.bill_body(990)
    conflicting = {**body, "description": "另一张账单"}
    sent = [conflicting if i % 10 == 0 else body for i in range(200)]
    answers = await asyncio.gather(*(shop.create(merchant, one) for one in sent))
    assert [a.status_code for a in answers].count(201) == 1
    winner = sent[next(i for i, a in enumerate(answers) if a.status_code == 201)]
    for one, answer in zip(sent, answers, strict=True):
        if one is winner:
            assert answer.status_code in {200, 201}, answer.text
        else:
            assert problem(answer) == (409, "idempotency_conflict")
    assert len({a.json()["bill_id"] for a in answers if a.status_code in {200, 201}}) == 1
    conn = await asyncpg.connect(world.app.state.settings.database_url)
    try:
        count = await conn.fetchval("SELECT count(*) FROM bills WHERE out_bill_no = $1", body["out_bill_no"])
    finally:
        await conn.close()
    assert count == 1


async def test_only_payment_items_the_merchant_is_entitled_to(world: World, shop: Shop) -> None:
    merchant = await shop.merchant()
    # a payment item the merchant is not entitled to
    fine = await shop.create(merchant, shop.bill_body(item_code="wl-028"))
    assert problem(fine) == (403, "merchant_not_entitled")
    # an item that is not a payment item at all (a library card check), even for a merchant entitled to it
    library = await world.merchant(["wl-030"])
    identity = await shop.create(library, shop.bill_body(item_code="wl-030"))
    assert problem(identity) == (403, "merchant_not_entitled")
    unknown = await shop.create(merchant, shop.bill_body(item_code="wl-999"))
    assert problem(unknown) == (404, "item_unknown")


async def test_malformed_bills_are_refused_naming_the_field(world: World, shop: Shop) -> None:
    merchant = await shop.merchant()
    for field, value in [
        ("amount_fen", 0),
        ("amount_fen", -5),
        ("amount_fen", "42.50"),
        ("amount_fen", 1.5),
        ("out_bill_no", ""),
        ("out_bill_no", "a b"),
        ("notify_url", "ftp://example.com/x"),
        ("expires_in_s", 10),
        ("expires_in_s", 10**9),
        ("description", "水费\x00"),
    ]:
        answer = await shop.create(merchant, {**shop.bill_body(), field: value})
        assert problem(answer) == (400, "invalid_request"), (field, value)
        assert field in answer.json()["fields"], (field, answer.json())
    missing = shop.bill_body()
    del missing["amount_fen"]
    assert problem(await shop.create(merchant, missing)) == (400, "invalid_request")
    extra = await shop.create(merchant, {**shop.bill_body(), "payer": "someone"})
    assert problem(extra) == (400, "invalid_request")


async def test_a_merchant_sees_only_its_own_bills(world: World, shop: Shop) -> None:
    owner = await shop.merchant()
    other = await shop.merchant(name="别家公司")
    bill = await shop.bill(owner)
    body_number = (await world.signed(owner, "GET", f"/v1/bills/{bill['bill_id']}")).json()["out_bill_no"]
    for path in [
        f"/v1/bills/{bill['bill_id']}",
        f"/v1/bills?out_bill_no={body_number}",
        f"/v1/bills/{bill['bill_id']}/notifications",
        f"/v1/bills/{bill['bill_id']}/qr",
    ]:
        assert problem(await world.signed(other, "GET", path)) == (404, "not_found"), path
    assert problem(await world.signed(other, "POST", f"/v1/bills/{bill['bill_id']}/close")) == (404, "not_found")
    refund = await shop.refund(other, bill["bill_id"], 1)
    assert problem(refund) == (404, "not_found")
    # an unknown key is not a merchant at all
    stranger = ed25519_actor()
    stranger.key_id = "key_unknown"
    assert problem(await world.signed(stranger, "GET", f"/v1/bills/{bill['bill_id']}"))[0] == 401


async def test_the_app_pulls_the_bill_up_with_merchant_item_and_amount(world: World, shop: Shop) -> None:
    merchant = await shop.merchant()
    bill = await shop.bill(merchant, 12_300)
    device = await shop.payer()
    answer = await world.signed(device, "GET", f"/v1/bills/{bill['bill_id']}")
    assert answer.status_code == 200, answer.text
    view = answer.json()
    assert view["merchant_name"] == "武隆区自来水公司"
    assert view["item_code"] == WATER
    assert view["item_name"]
    assert view["amount_fen"] == 12_300
    assert view["status"] == "pending"
    assert "notify_url" not in view
    assert problem(await world.signed(device, "GET", "/v1/bills/bil_nothing")) == (404, "not_found")


async def test_a_closed_or_expired_bill_cannot_be_paid(
    world: World, shop: Shop, merchant_server: MerchantServer
) -> None:
    merchant = await shop.merchant()
    device = await shop.payer()
    closed = await shop.bill(merchant)
    answer = await world.signed(merchant, "POST", f"/v1/bills/{closed['bill_id']}/close")
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "closed"
    again = await world.signed(merchant, "POST", f"/v1/bills/{closed['bill_id']}/close")
    assert again.status_code == 200
    assert problem(await shop.pay(device, closed["bill_id"])) == (409, "bill_not_payable")
    await until(lambda: [r.json()["event"] for r in merchant_server.received] == ["bill.closed"])

    expiring = await shop.bill(merchant, expires_in_s=60)
    world.clock.advance(61)
    assert await shop.status(merchant, expiring["bill_id"]) == "expired"
    assert problem(await shop.pay(device, expiring["bill_id"])) == (409, "bill_not_payable")
    assert await shop.bank.balance(device.ids["card_id"]) == 100_000


async def test_the_counter_gets_the_pull_up_link_as_png_or_svg(world: World, shop: Shop) -> None:
    merchant = await shop.merchant()
    bill = await shop.bill(merchant)
    png = await world.signed(merchant, "GET", f"/v1/bills/{bill['bill_id']}/qr", headers={"Accept": "image/png"})
    assert png.status_code == 200
    assert png.headers["content-type"] == "image/png"
    assert png.content.startswith(b"\x89PNG")
    svg = await world.signed(merchant, "GET", f"/v1/bills/{bill['bill_id']}/qr", headers={"Accept": "image/svg+xml"})
    assert svg.status_code == 200
    assert svg.headers["content-type"].startswith("image/svg+xml")
    assert b"<svg" in svg.content
    text = await world.signed(merchant, "GET", f"/v1/bills/{bill['bill_id']}/qr", headers={"Accept": "text/html"})
    assert problem(text) == (406, "not_acceptable")
