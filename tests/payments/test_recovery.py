"""Payments cut off between the bank and the local commit are completed or reversed by recovery, never doubled."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ecard.config import Settings
from ecard.payments import check, reconcile
from tests.live import LiveEcard
from tests.payments.conftest import MerchantServer, Shop, until
from tests.standins import StandinBank
from tests.support import Actor, World, problem


@pytest.fixture
def bank(tmp_path: Path) -> Iterator[StandinBank]:
    """A bank of the test's own: reconciliation compares the whole day's transfers at the bank with the ledger."""
    with StandinBank.running(tmp_path / "bank") as standin:
        yield standin


async def balance_becomes(bank: StandinBank, card_id: str, fen: int, timeout_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while await bank.balance(card_id) != fen:
        assert asyncio.get_running_loop().time() < deadline, "the bank never made the debit"
        await asyncio.sleep(0.05)


async def cut_off_after_the_debit(shop: Shop, device: Actor, bill_id: str, balance_after: int) -> None:
    """Pay while the bank holds its answers, and abandon the request once the bank has the debit."""
    await shop.bank.hold_debits()
    try:
        paying = asyncio.create_task(shop.pay(device, bill_id))
        await balance_becomes(shop.bank, device.ids["card_id"], balance_after)
        paying.cancel()
        with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
            await paying
    finally:
        await shop.bank.release_debits()


def today(world: World) -> dt.date:
    return dt.datetime.fromtimestamp(world.clock.now(), dt.UTC).date()


async def test_a_payment_cut_off_after_the_debit_is_completed_once(
    world: World, shop: Shop, merchant_server: MerchantServer
) -> None:
    merchant = await shop.merchant()
    device = await shop.payer(10_000)
    bill = await shop.bill(merchant, 4_000, expires_in_s=7_200)
    await cut_off_after_the_debit(shop, device, bill["bill_id"], 6_000)
    # unsettled: the merchant and the app see it being paid, and a second pay is told to ask again later
    assert await shop.status(merchant, bill["bill_id"]) == "paying"
    assert (await world.signed(device, "GET", f"/v1/bills/{bill['bill_id']}")).json()["status"] == "paying"
    again = await shop.pay(device, bill["bill_id"])
    assert problem(again) == (409, "payment_in_progress")
    assert 1 <= int(again.headers["retry-after"]) <= 60
    assert problem(await world.signed(merchant, "POST", f"/v1/bills/{bill['bill_id']}/close")) == (
        409,
        "bill_not_closable",
    )
    recovery = world.app.state.recovery
    within_grace = await recovery.run_once()
    assert within_grace.completed == []
    world.clock.advance(3_601)
    done = await recovery.run_once()
    assert len(done.completed) == 1
    assert await shop.status(merchant, bill["bill_id"]) == "paid"
    assert await shop.bank.balance(device.ids["card_id"]) == 6_000
    assert (await recovery.run_once()).completed == []
    await until(lambda: any(r.json()["event"] == "bill.paid" for r in merchant_server.received))
    assert await check(world.app.state.pool) == []
    assert (await reconcile(world.app.state.pool, world.app.state.bank, today(world))).differences == []


async def test_a_cut_off_payment_of_a_bill_that_expired_meanwhile_is_given_back(world: World, shop: Shop) -> None:
    merchant = await shop.merchant()
    device = await shop.payer(10_000)
    bill = await shop.bill(merchant, 4_000, expires_in_s=600)
    await cut_off_after_the_debit(shop, device, bill["bill_id"], 6_000)
    world.clock.advance(3_601)
    done = await world.app.state.recovery.run_once()
    assert len(done.reversed) == 1
    assert await shop.bank.balance(device.ids["card_id"]) == 10_000
    assert await shop.status(merchant, bill["bill_id"]) == "expired"
    assert await check(world.app.state.pool) == []
    assert (await reconcile(world.app.state.pool, world.app.state.bank, today(world))).differences == []


async def test_a_debit_the_bank_never_got_is_voided_and_the_bill_stays_payable(
    world: World, shop: Shop, bank: StandinBank
) -> None:
    merchant = await shop.merchant()
    device = await shop.payer(10_000)
    bill = await shop.bill(merchant, 4_000, expires_in_s=7_200)
    bank.stop()
    try:
        assert problem(await shop.pay(device, bill["bill_id"])) == (503, "bank_unavailable")
    finally:
        bank.start()
    world.clock.advance(3_601)
    done = await world.app.state.recovery.run_once()
    assert len(done.failed) == 1
    assert await shop.status(merchant, bill["bill_id"]) == "pending"
    answer = await shop.pay(device, bill["bill_id"])
    assert answer.status_code == 200, answer.text
    assert await shop.bank.balance(device.ids["card_id"]) == 6_000
    assert await check(world.app.state.pool) == []
    assert (await reconcile(world.app.state.pool, world.app.state.bank, today(world))).differences == []


def test_the_defaults_settle_an_interrupted_payment_within_a_minute() -> None:
    """An attempt cut off by a crash is free for recovery once its lease (the grace period) has run out; recovery
    looks at start and every interval after: at most grace + interval after the service is up again."""
    for defaults in (Settings(), Settings.from_env({})):
        assert defaults.payment_recovery_grace_s + defaults.payment_recovery_interval_s < 60
        # and the lease outlasts the bank calls it covers
        assert defaults.payment_recovery_grace_s > 4 * defaults.bank_timeout_s


async def test_a_service_killed_between_the_bank_debit_and_its_commit_recovers_without_double_charging(
    service_urls: tuple[str, str], tmp_path: Path, merchant_server: MerchantServer
) -> None:
    """On the default grace and interval: the bill reads `paying` after the restart and is paid within a minute."""
    live = await LiveEcard.create(
        "cq",
        service_urls,
        tmp_path / "cq",
        name="hy_pay_crash",
        ECARD_CALLBACK_BASE_DELAY_S="0.1",
        ECARD_CALLBACK_POLL_S="0.1",
        ECARD_CALLBACK_ALLOW_LOOPBACK="1",
    )
    with StandinBank.running(tmp_path / "bank", trust_keys=f"{live.base}/v1/issuer/request-keys") as bank:
        live.env["ECARD_BANK_URL"] = bank.base
        live.start()
        try:
            async with httpx.AsyncClient(base_url=live.base, timeout=30.0) as client:
                shop = Shop(live.world(client), bank, merchant_server.url)
                merchant = await shop.merchant()
                device = await shop.payer(10_000)
                bill = await shop.bill(merchant, 4_000, expires_in_s=7_200)
                # the UTC day of the payment, by the real clocks of the service and the bank (one day, or two
                # when the test runs across midnight)
                paid_on = {dt.datetime.now(dt.UTC).date()}
                await bank.hold_debits()
                paying = asyncio.create_task(shop.pay(device, bill["bill_id"]))
                await balance_becomes(bank, device.ids["card_id"], 6_000)
                live.kill()
                with contextlib.suppress(httpx.HTTPError):
                    await paying
                await bank.release_debits()
                assert await bank.balance(device.ids["card_id"]) == 6_000

                live.start()
                up = asyncio.get_running_loop().time()
                assert await shop.status(merchant, bill["bill_id"]) == "paying"
                again = await shop.pay(device, bill["bill_id"])
                assert problem(again) == (409, "payment_in_progress")
                assert int(again.headers["retry-after"]) >= 1
                while await shop.status(merchant, bill["bill_id"]) != "paid":
                    assert asyncio.get_running_loop().time() < up + 60, "not settled within a minute of the restart"
                    await asyncio.sleep(0.5)
                assert await bank.balance(device.ids["card_id"]) == 6_000
                assert problem(await shop.pay(device, bill["bill_id"])) == (409, "bill_not_payable")
                await until(lambda: any(r.json()["bill_id"] == bill["bill_id"] for r in merchant_server.received))
        finally:
            live.stop()
        recovered = await asyncio.to_thread(live.cli, "payments", "recover")
        assert recovered.returncode == 0, recovered.stderr
        assert json.loads(recovered.stdout)["completed"] == []
        checked = await asyncio.to_thread(live.cli, "ledger", "check")
        assert checked.returncode == 0, checked.stdout + checked.stderr
        paid_on.add(dt.datetime.now(dt.UTC).date())
        bank_transfers = 0
        for day in sorted(paid_on):
            reconciled = await asyncio.to_thread(live.cli, "ledger", "reconcile", "--date", day.isoformat())
            assert reconciled.returncode == 0, reconciled.stdout + reconciled.stderr
            report = json.loads(reconciled.stdout)
            assert report["clean"] is True
            bank_transfers += report["bank_transfers"]
        assert bank_transfers == 1
        bank_ledger = await bank.ledger()
        assert bank_ledger["balanced"] is True


async def test_a_refund_the_bank_did_not_confirm_is_credited_by_recovery(
    world: World, shop: Shop, bank: StandinBank, merchant_server: MerchantServer
) -> None:
    merchant = await shop.merchant()
    device = await shop.payer(10_000)
    bill = await shop.bill(merchant, 4_000, expires_in_s=7_200)
    assert (await shop.pay(device, bill["bill_id"])).status_code == 200
    bank.stop()
    try:
        answer = await shop.refund(merchant, bill["bill_id"], 1_500, out_refund_no="R-late")
    finally:
        bank.start()
    assert answer.status_code == 201, answer.text
    assert answer.json()["status"] == "processing"
    # granted: it counts against what may still be refunded, though the card has not got it yet
    assert problem(await shop.refund(merchant, bill["bill_id"], 2_501)) == (409, "refund_exceeds_paid")
    assert await bank.balance(device.ids["card_id"]) == 6_000
    world.clock.advance(3_601)
    done = await world.app.state.recovery.run_once()
    assert done.refunds_credited == [answer.json()["refund_id"]]
    assert await bank.balance(device.ids["card_id"]) == 7_500
    again = await shop.refund(merchant, bill["bill_id"], 1_500, out_refund_no="R-late")
    assert again.status_code == 200
    assert again.json()["status"] == "succeeded"
    await until(lambda: any(r.json()["event"] == "bill.refunded" for r in merchant_server.received))
    assert await check(world.app.state.pool) == []
    assert (await reconcile(world.app.state.pool, world.app.state.bank, today(world))).differences == []


async def test_a_refund_cut_off_after_the_banks_credit_is_booked_once(
    world: World, shop: Shop, bank: StandinBank
) -> None:
    merchant = await shop.merchant()
    device = await shop.payer(10_000)
    bill = await shop.bill(merchant, 4_000, expires_in_s=7_200)
    assert (await shop.pay(device, bill["bill_id"])).status_code == 200
    await bank.hold_credits()
    try:
        refunding = asyncio.create_task(shop.refund(merchant, bill["bill_id"], 1_500, out_refund_no="R-cut"))
        await balance_becomes(bank, device.ids["card_id"], 7_500)
        refunding.cancel()
        with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
            await refunding
    finally:
        await bank.release_credits()
    again = await shop.refund(merchant, bill["bill_id"], 1_500, out_refund_no="R-cut")
    assert again.status_code == 200
    assert again.json()["status"] == "processing"
    world.clock.advance(3_601)
    done = await world.app.state.recovery.run_once()
    assert done.refunds_credited == [again.json()["refund_id"]]
    # the bank answered the repeated credit with the one it had made: the card got the money once
    assert await bank.balance(device.ids["card_id"]) == 7_500
    assert (await shop.refund(merchant, bill["bill_id"], 1_500, out_refund_no="R-cut")).json()["status"] == "succeeded"
    assert await check(world.app.state.pool) == []
    assert (await reconcile(world.app.state.pool, world.app.state.bank, today(world))).differences == []


async def test_refunds_waiting_for_the_bank_hold_no_database_connection(
    world: World, shop: Shop, bank: StandinBank
) -> None:
    """More refunds held at the bank than the service has database connections, and it still answers."""
    merchant = await shop.merchant()
    device = await shop.payer(100_000)
    held = world.app.state.settings.db_pool_max + 1
    bills = [await shop.bill(merchant, 1_000) for _ in range(held)]
    for bill in bills:
        assert (await shop.pay(device, bill["bill_id"])).status_code == 200
    balance = await bank.balance(device.ids["card_id"])
    await bank.hold_credits()
    refunding = [asyncio.create_task(shop.refund(merchant, bill["bill_id"], 100)) for bill in bills]
    try:
        await balance_becomes(bank, device.ids["card_id"], balance + 100 * held)
        assert not any(task.done() for task in refunding)
        seen = await asyncio.wait_for(world.signed(merchant, "GET", f"/v1/bills/{bills[0]['bill_id']}"), 10)
        assert seen.status_code == 200
        assert seen.json()["refunded_fen"] == 100
    finally:
        await bank.release_credits()
    answers = await asyncio.gather(*refunding)
    assert [a.json()["status"] for a in answers] == ["succeeded"] * held
    assert await check(world.app.state.pool) == []
