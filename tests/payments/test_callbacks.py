"""Merchant callbacks: signed with the issuer request key, retried until 2xx, never lost, never sent twice at once."""

from __future__ import annotations

import asyncio

import pytest

from ecard.federation import Audience
from ecard.kit.refusal import Refusal
from ecard.payments import CallbackPolicy, Callbacks
from tests.payments.conftest import MerchantServer, Shop, check_signed_by_issuer, until
from tests.support import World


async def test_bill_paid_is_posted_signed_with_the_issuer_request_key(
    world: World, shop: Shop, merchant_server: MerchantServer
) -> None:
    merchant = await shop.merchant()
    device = await shop.payer()
    bill = await shop.bill(merchant, 4_250)
    paid = (await shop.pay(device, bill["bill_id"])).json()
    await until(lambda: len(merchant_server.received) >= 1)
    received = merchant_server.received[0]
    body = received.json()
    assert body["event"] == "bill.paid"
    assert body["bill_id"] == bill["bill_id"]
    assert body["out_bill_no"] == bill["out_bill_no"]
    assert body["amount_fen"] == 4_250
    assert body["transaction_id"] == paid["transaction_id"]
    assert body["at"]
    assert received.path == "/ecard/notify"
    key_set = (await world.client.get("/v1/issuer/request-keys")).json()
    check_signed_by_issuer(received, key_set, merchant_server.url)
    # a tampered body no longer verifies
    forged = type(received)(received.path, received.headers, received.body.replace(b"4250", b"1"))
    with pytest.raises(Refusal) as refused:
        check_signed_by_issuer(forged, key_set, merchant_server.url)
    assert refused.value.code == "signature_invalid"


async def test_a_merchant_server_that_is_down_gets_the_event_once_it_is_back(
    world: World, shop: Shop, merchant_server: MerchantServer
) -> None:
    merchant = await shop.merchant()
    device = await shop.payer()
    bill = await shop.bill(merchant, 1_000)
    merchant_server.down()
    assert (await shop.pay(device, bill["bill_id"])).status_code == 200

    async def attempts() -> list[dict[str, object]]:
        answer = await world.signed(merchant, "GET", f"/v1/bills/{bill['bill_id']}/notifications")
        assert answer.status_code == 200, answer.text
        items: list[dict[str, object]] = answer.json()["items"]
        return items

    failed: list[dict[str, object]] = []

    async def some_failed() -> None:
        deadline = asyncio.get_running_loop().time() + 10
        while len(failed) < 2:
            assert asyncio.get_running_loop().time() < deadline
            failed[:] = await attempts()
            await asyncio.sleep(0.05)

    await some_failed()
    assert all(a["http_status"] is None and a["error"] for a in failed)
    assert all(a["event"] == "bill.paid" for a in failed)
    merchant_server.up()
    await until(lambda: len(merchant_server.received) >= 1)
    await asyncio.sleep(0.3)
    assert len(merchant_server.received) == 1
    assert merchant_server.received[0].json()["bill_id"] == bill["bill_id"]
    log = await attempts()
    assert log[-1]["http_status"] == 200
    assert sum(1 for a in log if a["http_status"] == 200) == 1


async def test_an_error_answer_is_retried_until_2xx(world: World, shop: Shop, merchant_server: MerchantServer) -> None:
    merchant = await shop.merchant()
    device = await shop.payer()
    bill = await shop.bill(merchant, 1_000)
    merchant_server.status = 500
    assert (await shop.pay(device, bill["bill_id"])).status_code == 200
    await until(lambda: len(merchant_server.received) >= 3)
    merchant_server.status = 204
    count = len(merchant_server.received)
    await until(lambda: len(merchant_server.received) > count)
    await asyncio.sleep(0.3)
    assert len(merchant_server.received) == count + 1
    statuses = [
        a["http_status"]
        for a in (await world.signed(merchant, "GET", f"/v1/bills/{bill['bill_id']}/notifications")).json()["items"]
    ]
    assert statuses[-1] == 204
    assert set(statuses[:-1]) == {500}
    # every attempt carries the same event id, so the merchant can tell a retry from a new event
    assert len({r.json()["event_id"] for r in merchant_server.received}) == 1


async def test_after_24_hours_of_failures_the_service_gives_up(
    world: World, shop: Shop, merchant_server: MerchantServer
) -> None:
    merchant = await shop.merchant()
    device = await shop.payer()
    bill = await shop.bill(merchant, 1_000)
    merchant_server.down()
    assert (await shop.pay(device, bill["bill_id"])).status_code == 200
    pool = world.app.state.pool

    async def gave_up() -> bool:
        return bool(
            await pool.fetchval("SELECT gave_up_at IS NOT NULL FROM outbox_events WHERE bill_id = $1", bill["bill_id"])
        )

    await asyncio.sleep(0.3)
    assert not await gave_up()
    world.clock.advance(86_400 + 1)
    deadline = asyncio.get_running_loop().time() + 10
    while not await gave_up():
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.05)
    merchant_server.up()
    await asyncio.sleep(0.3)
    assert merchant_server.received == []


async def test_several_workers_never_send_one_event_twice(
    world: World, shop: Shop, merchant_server: MerchantServer
) -> None:
    merchant = await shop.merchant()
    device = await shop.payer(1_000_000)
    bills = [await shop.bill(merchant, 100 + i) for i in range(12)]
    merchant_server.down()
    for bill in bills:
        assert (await shop.pay(device, bill["bill_id"])).status_code == 200
    merchant_server.up()
    policy = CallbackPolicy(base_delay_s=0.01, window_s=86_400, poll_s=0.01, timeout_s=2)
    signer = world.app.state.request_keys.signer(Audience.CALLBACK)
    workers = [Callbacks(world.app.state.pool, world.clock, signer, policy) for _ in range(4)]
    try:
        world.clock.advance(3_600)
        await asyncio.gather(*(w.deliver_due() for w in workers for _ in range(3)))
        await until(lambda: len({r.json()["bill_id"] for r in merchant_server.received}) == 12)
    finally:
        for worker in workers:
            await worker.aclose()
    await asyncio.sleep(0.3)
    ids = [r.json()["event_id"] for r in merchant_server.received]
    assert len(ids) == len(set(ids)) == 12
