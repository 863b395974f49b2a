"""One slow merchant server takes a few deliveries of its own at a time and none of anyone else's."""

from __future__ import annotations

import dataclasses

import pytest

from ecard.config import Settings
from tests.payments.conftest import MerchantServer, Shop, until
from tests.payments.hostile import HostileServer
from tests.support import World

PER_MERCHANT = 2


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """A deadline long enough that a held answer stays held for the whole test."""
    return dataclasses.replace(settings, callback_timeout_s=60.0, callback_per_merchant=PER_MERCHANT)


async def test_a_slow_merchant_does_not_hold_up_another_merchants_callbacks(
    world: World, shop: Shop, merchant_server: MerchantServer
) -> None:
    with HostileServer("hold") as slow:
        sluggish = await shop.merchant(name="慢商户")
        prompt = await shop.merchant(name="快商户")
        device = await shop.payer(1_000_000)
        for amount in (101, 102, 103, 104):
            bill = await shop.bill(sluggish, amount, notify_url=slow.url)
            assert (await shop.pay(device, bill["bill_id"])).status_code == 200
        # the slow server holds its answers: the merchant's share of deliveries is taken, and no more
        await until(lambda: slow.open == PER_MERCHANT)
        theirs = await shop.bill(prompt, 500)
        assert (await shop.pay(device, theirs["bill_id"])).status_code == 200
        await until(lambda: any(r.json()["bill_id"] == theirs["bill_id"] for r in merchant_server.received))
        # delivered while every one of the slow merchant's posts is still waiting for its answer
        assert slow.open == PER_MERCHANT
        assert slow.requests == PER_MERCHANT
        slow.release()
        # once answered, the slow merchant's other events follow, still two at a time
        await until(lambda: slow.requests == 4 and slow.open == 0)
        assert slow.most_open == PER_MERCHANT
