"""A debit the bank answers as another movement than the one asked for is not booked: the pay is refused as
unconfirmed, the bill reads `paying` (recovery takes it from there) and an alert is raised."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from ecard.config import Settings
from ecard.payments import check
from tests.payments.conftest import Shop
from tests.payments.lying_bank import LyingBank, mismatches
from tests.support import World, problem


@pytest.fixture
def liar() -> Iterator[LyingBank]:
    with LyingBank().running() as bank:
        yield bank


@pytest.fixture
def settings(settings: Settings, liar: LyingBank) -> Settings:
    """The service's bank is the liar (the stand-in still funds the test's cards, to no avail)."""
    return dataclasses.replace(settings, bank_url=liar.base)


async def test_a_debit_the_bank_answers_for_another_card_is_not_booked(
    world: World, shop: Shop, liar: LyingBank
) -> None:
    merchant = await shop.merchant()
    device = await shop.payer(10_000)
    bill = await shop.bill(merchant, 4_000)
    before = mismatches("debit")
    answer = await shop.pay(device, bill["bill_id"])
    assert problem(answer) == (503, "bank_unavailable")
    assert [r.split(" ")[0] for r in liar.requests] == ["POST"]
    assert mismatches("debit") == before + 1
    assert await shop.status(merchant, bill["bill_id"]) == "paying"
    assert await world.app.state.pool.fetchval("SELECT count(*) FROM ledger_transfers") == 0
    assert await check(world.app.state.pool) == []
