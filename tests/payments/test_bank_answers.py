"""Recovery books nothing the bank describes as another movement than ours (another card, amount or direction):
the payment stays unsettled, an alert is raised, and it is left to a person."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ecard.bank import HttpBank
from ecard.payments import Recovery, check
from tests.payments.conftest import Shop
from tests.payments.lying_bank import LyingBank, mismatches
from tests.payments.test_recovery import cut_off_after_the_debit
from tests.standins import StandinBank
from tests.support import World


@pytest.fixture
def bank(tmp_path: Path) -> Iterator[StandinBank]:
    with StandinBank.running(tmp_path / "bank") as standin:
        yield standin


async def test_recovery_does_not_book_a_transfer_the_bank_describes_otherwise(world: World, shop: Shop) -> None:
    merchant = await shop.merchant()
    device = await shop.payer(10_000)
    # still payable after the hours the clock is moved by below
    bill = await shop.bill(merchant, 4_000, expires_in_s=86_400)
    await cut_off_after_the_debit(shop, device, bill["bill_id"], 6_000)
    world.clock.advance(3_601)
    before = mismatches("recovery")
    with LyingBank().running() as liar:
        lied_to = HttpBank(liar.base, None, timeout_s=2.0)
        try:
            done = await Recovery(world.app.state.pool, world.clock, lied_to, 3_600).run_once()
        finally:
            await lied_to.aclose()
        # looked the transfer up, and did not go on to reverse anything on the strength of that answer
        assert [r.split("?")[0] for r in liar.requests] == [f"GET /v1/transfers/{done.mismatched[0]}"]
    assert len(done.mismatched) == 1
    assert done.completed == done.reversed == done.failed == []
    assert mismatches("recovery") == before + 1
    assert await shop.status(merchant, bill["bill_id"]) == "paying"
    assert await check(world.app.state.pool) == []
    booked = await world.app.state.pool.fetchval(
        "SELECT count(*) FROM ledger_transfers WHERE bill_id = $1", bill["bill_id"]
    )
    assert booked == 0
    # the honest bank's answer is not looked at again for a while either: the case waits for a person
    world.clock.advance(60)
    assert (await world.app.state.recovery.run_once()).completed == []
    world.clock.advance(3_600)
    assert len((await world.app.state.recovery.run_once()).completed) == 1
    assert await shop.status(merchant, bill["bill_id"]) == "paid"
    assert await shop.bank.balance(device.ids["card_id"]) == 6_000
