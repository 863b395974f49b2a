"""Paying: approval by operators, the reservation at the bank, each row credited once, the rest released."""

from __future__ import annotations

from tests.disbursements.conftest import DUAL_FEN, Office, event_of, second_operator, until
from tests.payments.conftest import MerchantServer, check_signed_by_issuer
from tests.support import World, problem


async def test_an_approved_batch_pays_every_good_row_and_announces_it(
    office: Office, world: World, office_server: MerchantServer
) -> None:
    payer = await office.payer(funding_fen=500_000)
    merchant_id = payer.ids["merchant_id"]
    people = [await office.person(n) for n in ("李四", "王五", "赵六")]
    rows = [office.row(people[0], 60_000), office.row(people[1], 45_000), office.row({**people[2], "name": "错名"})]
    made = (await office.create(payer, office.body(rows))).json()
    assert (await office.approve(made["batch_id"])).status_code == 200
    done = await office.settled(payer, made["batch_id"])
    assert done["status"] == "completed"
    assert done["paid_fen"] == 105_000
    assert done["counts"] == {"ready": 0, "rejected": 1, "paid": 2, "failed": 0}
    assert await office.bank.balance(people[0]["card_id"]) == 60_000
    assert await office.bank.balance(people[1]["card_id"]) == 45_000
    assert await office.bank.balance(people[2]["card_id"]) == 0
    assert await office.bank.funding(merchant_id) == 500_000 - 105_000
    assert (await office.bank.ledger())["balanced"]
    await until(lambda: event_of(office_server, "batch.completed") is not None)
    event = event_of(office_server, "batch.completed")
    assert event is not None
    assert event["batch_id"] == made["batch_id"]
    assert event["paid_fen"] == 105_000
    assert event["counts"]["paid"] == 2
    received = next(r for r in office_server.received if r.json()["event"] == "batch.completed")
    key_set = (await world.client.get("/v1/issuer/request-keys")).json()
    check_signed_by_issuer(received, key_set, office_server.url)
    for person in people:
        assert person["id_number"] not in received.body.decode()
        assert person["name"] not in received.body.decode()
    assert await world.audit_intact()


async def test_not_covered_by_the_funding_account_nothing_moves(office: Office) -> None:
    payer = await office.payer(funding_fen=50_000)
    person = await office.person()
    made = (await office.create(payer, office.body([office.row(person, 60_000)]))).json()
    assert (await office.approve(made["batch_id"])).status_code == 200
    done = await office.settled(payer, made["batch_id"])
    assert (done["status"], done["failure_code"], done["paid_fen"]) == ("failed", "insufficient_funds", 0)
    assert await office.bank.balance(person["card_id"]) == 0
    assert await office.bank.funding(payer.ids["merchant_id"]) == 50_000


async def test_a_row_the_bank_refuses_fails_and_its_money_goes_back(office: Office) -> None:
    payer = await office.payer(funding_fen=200_000)
    good, refused = await office.person("李四"), await office.person("王五")
    await office.bank.faults(refuse_credits_to=refused["card_id"])
    try:
        body = office.body([office.row(good, 30_000, out_row_no="g"), office.row(refused, 40_000, out_row_no="x")])
        made = (await office.create(payer, body)).json()
        assert (await office.approve(made["batch_id"])).status_code == 200
        done = await office.settled(payer, made["batch_id"])
    finally:
        await office.bank.faults(refuse_credits_to="")
    assert done["status"] == "completed"
    assert done["counts"] == {"ready": 0, "rejected": 0, "paid": 1, "failed": 1}
    failed = await office.rows(payer, made["batch_id"], "?status=failed")
    assert [(r["out_row_no"], r["code"]) for r in failed] == [("x", "credit_refused")]
    assert await office.bank.balance(refused["card_id"]) == 0
    assert await office.bank.funding(payer.ids["merchant_id"]) == 200_000 - 30_000


async def test_transient_bank_faults_are_retried_and_nothing_is_paid_twice(office: Office) -> None:
    payer = await office.payer(funding_fen=1_000_000)
    people = [await office.person(f"人{i}") for i in range(5)]
    await office.bank.faults(unavailable_credits=7)
    made = (await office.create(payer, office.body([office.row(p, 10_000) for p in people]))).json()
    assert (await office.approve(made["batch_id"])).status_code == 200
    done = await office.settled(payer, made["batch_id"])
    assert done["status"] == "completed"
    assert done["paid_fen"] == 50_000
    for person in people:
        assert await office.bank.balance(person["card_id"]) == 10_000
    assert await office.bank.funding(payer.ids["merchant_id"]) == 950_000


async def test_above_the_threshold_two_different_operators_must_approve(office: Office, world: World) -> None:
    payer = await office.payer(funding_fen=DUAL_FEN * 2)
    person = await office.person()
    made = (await office.create(payer, office.body([office.row(person, DUAL_FEN + 1)]))).json()
    assert made["approvals"] == {"needed": 2, "given": 0}
    first = await office.approve(made["batch_id"])
    assert first.status_code == 200, first.text
    assert (first.json()["status"], first.json()["approvals"]["given"]) == ("awaiting_approval", 1)
    assert problem(await office.approve(made["batch_id"])) == (409, "approval_duplicate")
    second = await office.approve(made["batch_id"], await second_operator(world))
    assert second.status_code == 200, second.text
    assert second.json()["approvals"]["given"] == 2
    done = await office.settled(payer, made["batch_id"])
    assert done["status"] == "completed"
    assert await office.bank.balance(person["card_id"]) == DUAL_FEN + 1
    assert await world.audit_intact()


async def test_a_rejected_batch_pays_nothing_and_cannot_be_approved(
    office: Office, world: World, office_server: MerchantServer
) -> None:
    payer = await office.payer(funding_fen=100_000)
    person = await office.person()
    made = (await office.create(payer, office.body([office.row(person, 10_000)]))).json()
    path = f"/v1/admin/disbursements/{made['batch_id']}/reject"
    assert problem(await world.admin("POST", path, {"reason": ""})) == (400, "invalid_request")
    rejected = await world.admin("POST", path, {"reason": "名单有误"})
    assert rejected.status_code == 200, rejected.text
    assert rejected.json()["status"] == "rejected"
    assert problem(await office.approve(made["batch_id"])) == (409, "batch_not_approvable")
    assert await office.bank.balance(person["card_id"]) == 0
    assert await office.bank.funding(payer.ids["merchant_id"]) == 100_000
    unauthenticated = await world.client.post(f"/v1/admin/disbursements/{made['batch_id']}/approve", json={})
    assert problem(unauthenticated) == (401, "unauthorized")
    await until(lambda: event_of(office_server, "batch.failed") is not None)
    failed = event_of(office_server, "batch.failed")
    assert failed is not None
    assert (failed["batch_id"], failed["status"], failed["paid_fen"]) == (made["batch_id"], "rejected", 0)
    assert await world.audit_intact()


async def test_a_batch_not_approved_in_time_expires(office: Office, world: World) -> None:
    payer = await office.payer(funding_fen=100_000)
    made = (await office.create(payer, office.body([office.row(await office.person(), 10_000)]))).json()
    world.clock.advance(3601)
    assert problem(await office.approve(made["batch_id"])) == (409, "batch_not_approvable")
    assert (await office.batch(payer, made["batch_id"]))["status"] == "expired"
    other = (await office.create(payer, office.body([office.row(await office.person(), 10_000)]))).json()
    world.clock.advance(3601)
    await world.app.state.disbursements.expire_overdue()
    assert (await office.batch(payer, other["batch_id"]))["status"] == "expired"
