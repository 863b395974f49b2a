"""Refunds (partial, full, idempotent, never above what was paid) and the day's statement against the ledger."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
from typing import Any

from ecard.payments import check
from tests.payments.conftest import MerchantServer, Shop, until
from tests.support import Actor, World, ecard_cli, problem


async def paid_bill(shop: Shop, merchant: Actor, device: Actor, amount_fen: int) -> dict[str, Any]:
    bill = await shop.bill(merchant, amount_fen)
    answer = await shop.pay(device, bill["bill_id"])
    assert answer.status_code == 200, answer.text
    return bill


async def test_partial_then_full_refund_and_never_more_than_paid(
    world: World, shop: Shop, merchant_server: MerchantServer
) -> None:
    merchant = await shop.merchant()
    device = await shop.payer(10_000)
    bill = await paid_bill(shop, merchant, device, 4_000)
    assert await shop.bank.balance(device.ids["card_id"]) == 6_000

    above = await shop.refund(merchant, bill["bill_id"], 4_001)
    assert problem(above) == (409, "refund_exceeds_paid")
    first = await shop.refund(merchant, bill["bill_id"], 1_500, out_refund_no="R-1")
    assert first.status_code == 201, first.text
    assert first.json()["status"] == "succeeded"
    assert first.json()["amount_fen"] == 1_500
    assert await shop.bank.balance(device.ids["card_id"]) == 7_500
    assert await shop.status(merchant, bill["bill_id"]) == "paid"

    # the same out_refund_no again is the same refund; another body under it is a conflict
    again = await shop.refund(merchant, bill["bill_id"], 1_500, out_refund_no="R-1")
    assert again.status_code == 200
    assert again.json()["refund_id"] == first.json()["refund_id"]
    assert problem(await shop.refund(merchant, bill["bill_id"], 1_000, out_refund_no="R-1")) == (
        409,
        "idempotency_conflict",
    )
    assert await shop.bank.balance(device.ids["card_id"]) == 7_500

    assert problem(await shop.refund(merchant, bill["bill_id"], 2_501)) == (409, "refund_exceeds_paid")
    rest = await shop.refund(merchant, bill["bill_id"], 2_500)
    assert rest.status_code == 201, rest.text
    assert await shop.bank.balance(device.ids["card_id"]) == 10_000
    assert await shop.status(merchant, bill["bill_id"]) == "refunded"
    assert problem(await shop.refund(merchant, bill["bill_id"], 1)) == (409, "refund_exceeds_paid")

    await until(lambda: sum(1 for r in merchant_server.received if r.json()["event"] == "bill.refunded") == 2)
    refunded = [r.json() for r in merchant_server.received if r.json()["event"] == "bill.refunded"]
    assert sorted(r["amount_fen"] for r in refunded) == [1_500, 2_500]
    assert await check(world.app.state.pool) == []


async def test_concurrent_refunds_together_never_exceed_what_was_paid(world: World, shop: Shop) -> None:
    merchant = await shop.merchant()
    device = await shop.payer(10_000)
    bill = await paid_bill(shop, merchant, device, 1_000)
    answers = await asyncio.gather(*(shop.refund(merchant, bill["bill_id"], 300) for _ in range(10)))
    assert sorted(a.status_code for a in answers).count(201) == 3
    assert all(problem(a) == (409, "refund_exceeds_paid") for a in answers if a.status_code != 201)
    assert await shop.bank.balance(device.ids["card_id"]) == 9_000 + 900
    assert await check(world.app.state.pool) == []


async def test_an_unpaid_bill_has_nothing_to_refund(world: World, shop: Shop) -> None:
    merchant = await shop.merchant()
    bill = await shop.bill(merchant, 1_000)
    assert problem(await shop.refund(merchant, bill["bill_id"], 1)) == (409, "refund_exceeds_paid")
    for body in [{"out_refund_no": "x", "amount_fen": 0}, {"amount_fen": 5}, {"out_refund_no": "x", "amount_fen": 1.5}]:
        answer = await world.signed(merchant, "POST", f"/v1/bills/{bill['bill_id']}/refunds", body)
        assert problem(answer) == (400, "invalid_request"), body


async def test_the_days_statement_agrees_with_the_ledger_in_json_and_csv(world: World, shop: Shop) -> None:
    merchant = await shop.merchant()
    other = await shop.merchant(name="另一家")
    device = await shop.payer(100_000)
    first = await paid_bill(shop, merchant, device, 4_250)
    await paid_bill(shop, merchant, device, 1_000)
    await paid_bill(shop, other, device, 7_777)
    await shop.bill(merchant, 999)  # unpaid: not in the statement
    assert (await shop.refund(merchant, first["bill_id"], 250)).status_code == 201
    today = dt.datetime.fromtimestamp(world.clock.now(), dt.UTC).date().isoformat()

    answer = await world.signed(merchant, "GET", f"/v1/statements/{today}")
    assert answer.status_code == 200, answer.text
    statement = answer.json()
    assert statement["date"] == today
    assert len(statement["bills"]) == 2
    assert len(statement["refunds"]) == 1
    assert statement["totals"] == {
        "paid_count": 2,
        "paid_fen": 5_250,
        "refund_count": 1,
        "refunded_fen": 250,
        "net_fen": 5_000,
    }
    # the totals are the ledger's: the merchant's payable account moved by exactly the net
    moved = await world.app.state.pool.fetchval(
        "SELECT sum(amount_fen) FROM ledger_entries WHERE account = $1", f"merchant:{merchant.ids['merchant_id']}"
    )
    assert moved == statement["totals"]["net_fen"]

    as_csv = await world.signed(merchant, "GET", f"/v1/statements/{today}", headers={"Accept": "text/csv"})
    assert as_csv.status_code == 200
    assert as_csv.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert [r["kind"] for r in rows].count("bill") == 2
    assert next(r for r in rows if r["kind"] == "net")["amount_fen"] == "5000"
    assert sum(int(r["amount_fen"]) for r in rows if r["kind"] in {"bill", "refund"}) == 5_000

    yesterday = (dt.date.fromisoformat(today) - dt.timedelta(days=1)).isoformat()
    empty = (await world.signed(merchant, "GET", f"/v1/statements/{yesterday}")).json()
    assert empty["bills"] == []
    assert empty["totals"]["net_fen"] == 0
    assert problem(await world.signed(merchant, "GET", "/v1/statements/2026-13-01")) == (400, "invalid_request")
    device_asks = await world.signed(device, "GET", f"/v1/statements/{today}")
    assert problem(device_asks) == (403, "forbidden")

    run = await ecard_cli(world, "ledger", "check")
    assert run.returncode == 0, run.stdout + run.stderr


async def test_statement_csv_cells_are_quoted_and_never_run_as_formulas(world: World, shop: Shop) -> None:
    merchant = await shop.merchant()
    device = await shop.payer(100_000)
    for number in ("@SUM.A1", "-42", "W-ok"):
        bill = await shop.bill(merchant, 1_000, out_bill_no=number)
        assert (await shop.pay(device, bill["bill_id"])).status_code == 200
    refunded = await shop.bill(merchant, 2_000, out_bill_no="R-base")
    assert (await shop.pay(device, refunded["bill_id"])).status_code == 200
    assert (await shop.refund(merchant, refunded["bill_id"], 250, out_refund_no="-1")).status_code == 201
    today = dt.datetime.fromtimestamp(world.clock.now(), dt.UTC).date().isoformat()
    as_csv = await world.signed(merchant, "GET", f"/v1/statements/{today}", headers={"Accept": "text/csv"})
    assert as_csv.status_code == 200
    lines = as_csv.text.split("\r\n")
    # every cell of every line is quoted
    assert all(line.startswith('"') and line.endswith('"') for line in lines if line)
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    numbers = {r["out_no"] for r in rows if r["kind"] in {"bill", "refund"}}
    assert numbers == {"'@SUM.A1", "'-42", "W-ok", "R-base", "'-1"}
    # amounts stay numbers, the refund's negative one included
    assert sorted(int(r["amount_fen"]) for r in rows if r["kind"] in {"bill", "refund"}) == [
        -250,
        1_000,
        1_000,
        1_000,
        2_000,
    ]
