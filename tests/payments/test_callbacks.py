"""Merchant callbacks: signed with the issuer request key, retried until 2xx, never lost, never sent twice at once,
and a merchant server that answers too much, too slowly or not at all costs one bounded attempt."""

from __future__ import annotations

import asyncio

import pytest

from ecard.federation import Audience
from ecard.kit.refusal import Refusal
from ecard.payments import CallbackPolicy, Callbacks, Destinations
from tests.payments.conftest import MerchantServer, Shop, check_signed_by_issuer, until
from tests.payments.hostile import HostileServer
from tests.support import Actor, World

# A retry is due at most this long after a failure (base 0.05 s · 2^n, capped at an hour): moving the clock by it
# makes every waiting retry due at once.
AN_HOUR_S = 3_601


async def attempts(world: World, merchant: Actor, bill_id: str) -> list[dict[str, object]]:
    answer = await world.signed(merchant, "GET", f"/v1/bills/{bill_id}/notifications")
    assert answer.status_code == 200, answer.text
    items: list[dict[str, object]] = answer.json()["items"]
    return items


async def attempts_become(world: World, merchant: Actor, bill_id: str, count: int) -> list[dict[str, object]]:
    """Once the delivery log lists `count` attempts (the deliverer records each as it ends)."""
    found: list[dict[str, object]] = []

    async def listed() -> bool:
        found[:] = await attempts(world, merchant, bill_id)
        return len(found) >= count

    deadline = asyncio.get_running_loop().time() + 20
    while not await listed():
        assert asyncio.get_running_loop().time() < deadline, f"fewer than {count} attempts: {found}"
        await asyncio.sleep(0.05)
    return found


async def settled(world: World, bill_id: str) -> bool:
    """Every event of the bill is delivered or given up: no deliverer will ever post it again."""
    pending = await world.app.state.pool.fetchval(
        "SELECT count(*) FROM outbox_events WHERE bill_id = $1 AND delivered_at IS NULL AND gave_up_at IS NULL",
        bill_id,
    )
    return int(pending) == 0


async def until_settled(world: World, bill_id: str) -> None:
    deadline = asyncio.get_running_loop().time() + 20
    while not await settled(world, bill_id):
        assert asyncio.get_running_loop().time() < deadline, "the bill's callbacks were never settled"
        await asyncio.sleep(0.05)


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
    failed = await attempts_become(world, merchant, bill["bill_id"], 2)
    assert all(a["http_status"] is None and a["error"] for a in failed)
    assert all(a["event"] == "bill.paid" for a in failed)
    merchant_server.up()
    world.clock.advance(AN_HOUR_S)
    await until_settled(world, bill["bill_id"])
    # delivered: never posted again, so what the merchant got is all it will ever get
    assert len(merchant_server.received) == 1
    assert merchant_server.received[0].json()["bill_id"] == bill["bill_id"]
    log = await attempts(world, merchant, bill["bill_id"])
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
    world.clock.advance(AN_HOUR_S)
    await until_settled(world, bill["bill_id"])
    statuses = [a["http_status"] for a in await attempts(world, merchant, bill["bill_id"])]
    assert len(statuses) == len(merchant_server.received)
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
    await attempts_become(world, merchant, bill["bill_id"], 2)
    # failing for a while is not failing for a day
    assert not await settled(world, bill["bill_id"])
    world.clock.advance(86_400 + 1)
    await until_settled(world, bill["bill_id"])
    given_up = await world.app.state.pool.fetchval(
        "SELECT gave_up_at IS NOT NULL FROM outbox_events WHERE bill_id = $1", bill["bill_id"]
    )
    assert given_up is True
    merchant_server.up()
    # a round of another deliverer, later still, finds nothing of it to send
    policy = CallbackPolicy(base_delay_s=0.01, window_s=86_400, poll_s=0.01, deadline_s=2)
    signer = world.app.state.request_keys.signer(Audience.CALLBACK)
    late = Callbacks(world.app.state.pool, world.clock, signer, policy, Destinations(allow_loopback=True))
    try:
        world.clock.advance(AN_HOUR_S)
        assert await late.deliver_due() == 0
    finally:
        await late.aclose()
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
    policy = CallbackPolicy(base_delay_s=0.01, window_s=86_400, poll_s=0.01, deadline_s=2, per_merchant=12)
    destinations = Destinations(allow_loopback=True)
    signer = world.app.state.request_keys.signer(Audience.CALLBACK)
    workers = [Callbacks(world.app.state.pool, world.clock, signer, policy, destinations) for _ in range(4)]
    try:
        world.clock.advance(AN_HOUR_S)
        await asyncio.gather(*(w.deliver_due() for w in workers for _ in range(3)))
        for bill in bills:
            await until_settled(world, bill["bill_id"])
    finally:
        for worker in workers:
            await worker.aclose()
    ids = [r.json()["event_id"] for r in merchant_server.received]
    assert len(ids) == len(set(ids)) == 12


async def test_a_400_mb_answer_is_not_read_and_the_status_counts(world: World, shop: Shop) -> None:
    with HostileServer("huge") as server:
        merchant = await shop.merchant()
        device = await shop.payer()
        bill = await shop.bill(merchant, 1_000, notify_url=server.url)
        assert (await shop.pay(device, bill["bill_id"])).status_code == 200
        await until_settled(world, bill["bill_id"])
        [attempt] = await attempts(world, merchant, bill["bill_id"])
        assert attempt["http_status"] == 200
        assert attempt["error"] is None
        # the service hung up after a few KiB: what the server got out is what the sockets' buffers held
        await until(lambda: server.finished == 1)
        assert server.sent < 64 * 1024 * 1024


async def test_an_answer_dripped_byte_by_byte_ends_at_the_deadline(world: World, shop: Shop) -> None:
    """Each byte comes well inside any socket timeout; only a deadline for the whole attempt ends it."""
    with HostileServer("drip", drip_s=0.5) as server:
        merchant = await shop.merchant()
        device = await shop.payer()
        bill = await shop.bill(merchant, 1_000, notify_url=server.url)
        assert (await shop.pay(device, bill["bill_id"])).status_code == 200
        [attempt] = await attempts_become(world, merchant, bill["bill_id"], 1)
        assert attempt["http_status"] is None
        assert attempt["error"] == "deadline_exceeded"
        assert server.sent >= 1


async def test_a_server_that_never_answers_ends_at_the_deadline_and_is_retried(world: World, shop: Shop) -> None:
    with HostileServer("hang") as server:
        merchant = await shop.merchant()
        device = await shop.payer()
        bill = await shop.bill(merchant, 1_000, notify_url=server.url)
        assert (await shop.pay(device, bill["bill_id"])).status_code == 200
        [first] = await attempts_become(world, merchant, bill["bill_id"], 1)
        assert first["error"] == "deadline_exceeded"
        world.clock.advance(AN_HOUR_S)
        log = await attempts_become(world, merchant, bill["bill_id"], 2)
        assert [a["error"] for a in log[:2]] == ["deadline_exceeded", "deadline_exceeded"]
        assert server.requests >= 2
        assert not await settled(world, bill["bill_id"])
