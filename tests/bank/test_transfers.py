"""Money through the bank adapter against the stand-in bank: balances, idempotency, concurrency, queries, reversals."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ecard.bank import BankConflict, BankTransfer, InsufficientFunds
from tests.standins import StandinBank


@pytest.fixture(scope="module")
def bank(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandinBank]:
    """One stand-in for this module: every test uses cards and transfer ids of its own."""
    with StandinBank.running(tmp_path_factory.mktemp("bank")) as standin:
        yield standin


async def entries(bank: StandinBank) -> int:
    return int((await bank.ledger())["entries"])


def card() -> str:
    return f"crd_{os.urandom(6).hex()}"


def transfer_id() -> str:
    return f"pay_{os.urandom(8).hex()}"


def day_of(transfer: BankTransfer) -> dt.date:
    """The UTC day the bank booked a transfer on, by its own clock (not the test's: a run may cross midnight)."""
    return dt.date.fromisoformat(transfer.at[:10])


async def post_transfer(bank: StandinBank, body: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=bank.base, timeout=10.0) as client:
        return await client.post("/v1/transfers", json=body)


async def test_credit_then_debit_moves_money_and_keeps_the_ledger_balanced(bank: StandinBank) -> None:
    holder = card()
    before = await entries(bank)
    assert await bank.balance(holder) == 0
    assert await bank.credit(holder, 10_000) == 10_000
    adapter = bank.adapter()
    try:
        debit = await adapter.debit("pay_1", holder, 4_250, "bill bil_1")
        assert debit == BankTransfer("pay_1", holder, "debit", 4_250, "completed", debit.at)
        assert await bank.balance(holder) == 5_750
        refund = await adapter.credit("ref_1", holder, 1_000, "refund of bil_1")
        assert (refund.direction, refund.amount_fen, refund.status) == ("credit", 1_000, "completed")
        assert await bank.balance(holder) == 6_750
    finally:
        await adapter.aclose()
    ledger = await bank.ledger()
    assert ledger["balanced"] is True
    assert ledger["sum_fen"] == 0
    assert ledger["unbalanced_transfers"] == []
    # test credit, debit and credit: two entries each
    assert ledger["entries"] == before + 6


async def test_a_debit_above_the_balance_is_refused_and_moves_nothing(bank: StandinBank) -> None:
    holder = card()
    await bank.credit(holder, 500)
    adapter = bank.adapter()
    try:
        with pytest.raises(InsufficientFunds):
            await adapter.debit("pay_big", holder, 501, "too much")
        assert await bank.balance(holder) == 500
        assert await adapter.transfer("pay_big") is None
        # nothing was recorded, so the same transfer may go through once the money is there
        await bank.credit(holder, 1)
        made = await adapter.debit("pay_big", holder, 501, "too much")
        assert made.status == "completed"
        assert await bank.balance(holder) == 0
        with pytest.raises(InsufficientFunds):
            await adapter.debit(transfer_id(), holder, 1, "empty now")
        with pytest.raises(InsufficientFunds):
            await adapter.debit(transfer_id(), card(), 1, "a card the bank has never seen")
    finally:
        await adapter.aclose()
    assert (await bank.ledger())["balanced"] is True


async def test_a_replayed_debit_is_answered_with_the_same_transfer_not_made_again(bank: StandinBank) -> None:
    holder = card()
    await bank.credit(holder, 1_000)
    body = {"transfer_id": "pay_replay", "card_id": holder, "direction": "debit", "amount_fen": 300, "memo": "m"}
    first = await post_transfer(bank, body)
    again = await post_transfer(bank, body)
    assert first.status_code == 201, first.text
    assert again.status_code == 200, again.text
    assert again.json() == first.json()
    assert await bank.balance(holder) == 700
    adapter = bank.adapter()
    try:
        replayed = await adapter.debit("pay_replay", holder, 300, "m")
    finally:
        await adapter.aclose()
    assert replayed.at == first.json()["at"]
    assert await bank.balance(holder) == 700


async def test_the_same_transfer_id_with_another_body_is_a_conflict(bank: StandinBank) -> None:
    holder, other = card(), card()
    await bank.credit(holder, 1_000)
    await bank.credit(other, 1_000)
    body = {"transfer_id": transfer_id(), "card_id": holder, "direction": "debit", "amount_fen": 300, "memo": "m"}
    assert (await post_transfer(bank, body)).status_code == 201
    for change in ({"amount_fen": 301}, {"direction": "credit"}, {"memo": "another memo"}, {"card_id": other}):
        conflict = await post_transfer(bank, {**body, **change})
        assert conflict.status_code == 409, (change, conflict.text)
        assert conflict.headers["content-type"].startswith("application/problem+json")
        assert conflict.json()["code"] == "transfer_conflict"
    adapter = bank.adapter()
    try:
        with pytest.raises(BankConflict):
            await adapter.debit(str(body["transfer_id"]), holder, 999, "m")
    finally:
        await adapter.aclose()
    assert await bank.balance(holder) == 700
    assert await bank.balance(other) == 1_000


async def test_fifty_concurrent_debits_with_one_transfer_id_debit_once(bank: StandinBank) -> None:
    holder = card()
    await bank.credit(holder, 10_000)
    before = await entries(bank)
    adapter = bank.adapter(timeout_s=20.0)
    try:
        made = await asyncio.gather(*(adapter.debit("pay_race", holder, 2_500, "bill") for _ in range(50)))
    finally:
        await adapter.aclose()
    assert {(t.transfer_id, t.amount_fen, t.status, t.at) for t in made} == {
        ("pay_race", 2_500, "completed", made[0].at)
    }
    assert await bank.balance(holder) == 7_500
    ledger = await bank.ledger()
    assert ledger["balanced"] is True
    assert ledger["entries"] == before + 2


async def test_concurrent_debits_never_take_a_balance_below_zero(bank: StandinBank) -> None:
    holder = card()
    await bank.credit(holder, 1_000)
    adapter = bank.adapter(timeout_s=20.0)
    try:
        outcomes = await asyncio.gather(
            *(adapter.debit(transfer_id(), holder, 300, "bill") for _ in range(20)), return_exceptions=True
        )
    finally:
        await adapter.aclose()
    made = [o for o in outcomes if isinstance(o, BankTransfer)]
    refused = [o for o in outcomes if isinstance(o, InsufficientFunds)]
    assert (len(made), len(refused)) == (3, 17)
    assert await bank.balance(holder) == 100
    assert (await bank.ledger())["balanced"] is True


async def test_a_transfer_is_found_by_its_id_and_an_unknown_id_is_not(bank: StandinBank) -> None:
    holder = card()
    await bank.credit(holder, 1_000)
    adapter = bank.adapter()
    try:
        made = await adapter.debit("pay_query.1:a-b", holder, 100, "m")
        assert await adapter.transfer("pay_query.1:a-b") == made
        assert await adapter.transfer("pay_never_made") is None
    finally:
        await adapter.aclose()
    async with httpx.AsyncClient(base_url=bank.base) as client:
        missing = await client.get("/v1/transfers/pay_never_made")
    assert missing.status_code == 404
    assert missing.json()["code"] == "transfer_not_found"


async def test_the_days_transfers_are_the_issuers_transfers_of_that_day(bank: StandinBank) -> None:
    holder = card()
    await bank.credit(holder, 1_000)
    adapter = bank.adapter()
    try:
        first = await adapter.debit("pay_day_1", holder, 100, "m")
        second = await adapter.credit("ref_day_1", holder, 40, "refund")
        third = await adapter.debit("pay_day_2", holder, 200, "m")
        days = sorted({day_of(t) for t in (first, second, third)})
        listed = [t for day in days for t in await adapter.transfers_on(day)]
        assert [t for t in listed if t.card_id == holder] == [first, second, third]
        # test credits are money from outside, not the issuer's transfers
        assert not [t for t in listed if t.transfer_id.startswith("tcr_")]
        before = await adapter.transfers_on(days[0] - dt.timedelta(days=1))
        assert [t for t in before if t.card_id == holder] == []
    finally:
        await adapter.aclose()
    async with httpx.AsyncClient(base_url=bank.base) as client:
        for bad in ("2026-13-01", "yesterday", ""):
            refused = await client.get("/v1/transfers", params={"date": bad})
            assert refused.status_code == 400, bad
            assert refused.json()["code"] == "invalid_request"
        missing = await client.get("/v1/transfers")
        assert missing.status_code == 400


async def test_a_reversed_debit_gives_the_money_back_once(bank: StandinBank) -> None:
    holder = card()
    await bank.credit(holder, 1_000)
    adapter = bank.adapter()
    try:
        await adapter.debit("pay_undo", holder, 600, "m")
        assert await bank.balance(holder) == 400
        reversed_ = await adapter.reverse("pay_undo", "bill closed before commit")
        assert (reversed_.status, reversed_.amount_fen) == ("reversed", 600)
        assert await adapter.reverse("pay_undo", "again") == reversed_
        assert await bank.balance(holder) == 1_000
        assert await adapter.transfer("pay_undo") == reversed_
        # the id stays taken: replaying the debit does not debit again
        replay = await adapter.debit("pay_undo", holder, 600, "m")
        assert replay.status == "reversed"
        assert await bank.balance(holder) == 1_000
        listed = await adapter.transfers_on(day_of(reversed_))
        assert [t.status for t in listed if t.card_id == holder] == ["reversed"]
    finally:
        await adapter.aclose()
    assert (await bank.ledger())["balanced"] is True


async def test_reversing_an_unknown_id_voids_it_so_a_late_debit_cannot_land(bank: StandinBank) -> None:
    holder = card()
    await bank.credit(holder, 1_000)
    adapter = bank.adapter()
    try:
        voided = await adapter.reverse("pay_in_flight", "recovery: outcome unknown")
        assert (voided.status, voided.card_id, voided.amount_fen) == ("voided", "", 0)
        with pytest.raises(BankConflict, match="transfer_voided"):
            await adapter.debit("pay_in_flight", holder, 100, "m")
        assert await bank.balance(holder) == 1_000
        assert (await adapter.transfer("pay_in_flight")) == voided
        assert "pay_in_flight" not in {t.transfer_id for t in await adapter.transfers_on(day_of(voided))}
    finally:
        await adapter.aclose()


async def test_a_credit_whose_money_was_spent_cannot_be_reversed(bank: StandinBank) -> None:
    holder = card()
    adapter = bank.adapter()
    try:
        await adapter.credit("ref_spent", holder, 500, "refund")
        await adapter.debit("pay_spend", holder, 400, "m")
        with pytest.raises(InsufficientFunds):
            await adapter.reverse("ref_spent", "taken back")
        assert (await adapter.transfer("ref_spent")) is not None
        assert await bank.balance(holder) == 100
    finally:
        await adapter.aclose()
    assert (await bank.ledger())["balanced"] is True


MALFORMED: list[tuple[dict[str, Any], str]] = [
    ({"amount_fen": 0}, "amount_fen"),
    ({"amount_fen": -5}, "amount_fen"),
    ({"amount_fen": 10**13}, "amount_fen"),
    ({"amount_fen": None}, "amount_fen"),
    ({"direction": "steal"}, "direction"),
    ({"transfer_id": ""}, "transfer_id"),
    ({"transfer_id": "x" * 65}, "transfer_id"),
    ({"transfer_id": "has space"}, "transfer_id"),
    ({"card_id": "crd/../x"}, "card_id"),
    ({"memo": "line\nbreak"}, "memo"),
    ({"memo": "m" * 141}, "memo"),
    ({"extra": 1}, "extra"),
]


async def test_malformed_transfers_are_refused_and_name_the_field(bank: StandinBank) -> None:
    holder = card()
    await bank.credit(holder, 1_000)
    before = await entries(bank)
    body = {"transfer_id": transfer_id(), "card_id": holder, "direction": "debit", "amount_fen": 100, "memo": "m"}
    for change, field in MALFORMED:
        refused = await post_transfer(bank, {**body, **change})
        assert refused.status_code == 400, (change, refused.text)
        assert refused.json()["code"] == "invalid_request"
        assert field in refused.json()["fields"], (change, refused.json())
    async with httpx.AsyncClient(base_url=bank.base) as client:
        not_json = await client.post(
            "/v1/transfers", content=b"{not json", headers={"Content-Type": "application/json"}
        )
        assert not_json.status_code == 400
        assert not_json.json()["code"] == "invalid_request"
        bad_id = await client.post("/v1/transfers/has%20space/reverse", json={"memo": ""})
        assert bad_id.status_code == 400
        assert bad_id.json()["fields"] == ["transfer_id"]
    assert await bank.balance(holder) == 1_000
    assert await entries(bank) == before
