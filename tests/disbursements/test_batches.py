"""Batches: uploaded as JSON or CSV by an entitled paying department, every row checked before a fen moves."""

from __future__ import annotations

import asyncio

from tests.disbursements.conftest import ALLOWANCE, WATER, Office
from tests.support import World, problem


async def test_a_batch_of_good_rows_awaits_approval_with_its_totals(office: Office) -> None:
    payer = await office.payer()
    people = [await office.person(name) for name in ("李四", "王五")]
    answer = await office.create(payer, office.body([office.row(people[0], 60_000), office.row(people[1], 45_000)]))
    assert answer.status_code == 201, answer.text
    made = answer.json()
    assert made["status"] == "awaiting_approval"
    assert made["rows_total"] == 2
    assert made["amount_total_fen"] == 105_000
    assert made["counts"] == {"ready": 2, "rejected": 0, "paid": 0, "failed": 0}
    assert made["approvals"] == {"needed": 1, "given": 0}


async def test_every_row_refusal_is_named_and_no_personal_data_is_shown(office: Office, world: World) -> None:
    payer = await office.payer()
    names = ("赵一", "钱二", "孙三", "周四", "吴五")
    good, wrong_name, cancelled, lost, twice = [await office.person(n) for n in names]
    assert (await world.set_status(cancelled["card_id"], "cancelled")).status_code == 200
    assert (await world.set_status(lost["card_id"], "suspended")).status_code == 200
    unknown = {"id_number": "500101199001011234", "name": "不存在"}
    rows = [
        office.row(good, 10_000, out_row_no="r1"),
        office.row({**wrong_name, "name": "钱三"}, 10_000, out_row_no="r2"),
        office.row(unknown, 10_000, out_row_no="r3"),
        office.row(cancelled, 10_000, out_row_no="r4"),
        office.row(lost, 10_000, out_row_no="r5"),
        office.row(twice, 10_000, out_row_no="r6"),
        office.row(twice, 10_000, out_row_no="r7"),
        office.row(good, 10_000, out_row_no="r1"),
        office.row(wrong_name, 0, out_row_no="r8"),
        office.row(wrong_name, "12.5", out_row_no="r9"),
        office.row(wrong_name, -5, out_row_no="r10"),
    ]
    answer = await office.create(payer, office.body(rows))
    assert answer.status_code == 201, answer.text
    made = answer.json()
    assert made["counts"] == {"ready": 3, "rejected": 8, "paid": 0, "failed": 0}
    # the suspended (reported lost) card is paid: the account outlives the phone
    assert made["amount_total_fen"] == 30_000
    listed = await office.rows(payer, made["batch_id"])
    codes = {(r["out_row_no"], r["status"], r["code"]) for r in listed}
    assert codes == {
        ("r1", "ready", None),
        ("r2", "rejected", "identity_mismatch"),
        ("r3", "rejected", "cardholder_not_found"),
        ("r4", "rejected", "card_cancelled"),
        ("r5", "ready", None),
        ("r6", "ready", None),
        ("r7", "rejected", "duplicate_row"),
        ("r1", "rejected", "duplicate_row"),
        ("r8", "rejected", "invalid_amount"),
        ("r9", "rejected", "invalid_amount"),
        ("r10", "rejected", "invalid_amount"),
    }
    rejected = await office.rows(payer, made["batch_id"], "?status=rejected&limit=3")
    assert len(rejected) == 3
    assert all(r["status"] == "rejected" for r in rejected)
    shown = answer.text + str(listed)
    for person in (good, wrong_name, cancelled, lost, twice):
        assert person["id_number"] not in shown
        assert person["name"] not in shown


async def test_the_same_batch_again_is_the_same_batch_and_another_body_conflicts(office: Office) -> None:
    payer = await office.payer()
    body = office.body([office.row(await office.person())])
    first = await office.create(payer, body)
    again = await office.create(payer, body)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["batch_id"] == first.json()["batch_id"]
    as_csv = await office.create_csv(payer, body)
    assert as_csv.status_code == 200, as_csv.text
    assert as_csv.json()["batch_id"] == first.json()["batch_id"]
    changed = {**body, "rows": [{**body["rows"][0], "amount_fen": 1}]}
    assert problem(await office.create(payer, changed)) == (409, "idempotency_conflict")


async def test_a_concurrent_race_on_one_out_batch_no_makes_one_batch(office: Office) -> None:
    payer = await office.payer()
    body = office.body([office.row(await office.person(n)) for n in ("甲", "乙", "丙")])
    answers = await asyncio.gather(*(office.create(payer, body) for _ in range(6)))
    assert sorted(a.status_code for a in answers) == [200] * 5 + [201]
    assert len({a.json()["batch_id"] for a in answers}) == 1


async def test_only_disbursement_items_the_merchant_is_entitled_to(office: Office, world: World) -> None:
    payer = await office.payer()
    person = await office.person()
    other_item = office.body([office.row(person)], item_code="wl-025")
    assert problem(await office.create(payer, other_item)) == (403, "merchant_not_entitled")
    waterworks = await office.payer(items=[WATER], name="自来水公司")
    assert problem(await office.create(waterworks, office.body([office.row(person)], item_code=WATER))) == (
        403,
        "merchant_not_entitled",
    )
    assert problem(await office.create(payer, office.body([office.row(person)], item_code="wl-999"))) == (
        404,
        "item_unknown",
    )
    channel = await world.channel()
    assert problem(await office.create(channel, office.body([office.row(person)])))[0] == 403


async def test_malformed_uploads_are_refused_clearly(office: Office) -> None:
    payer = await office.payer()
    person = await office.person()
    no_rows = office.body([])
    assert problem(await office.create(payer, no_rows)) == (400, "invalid_request")
    bad_row_no = office.body([office.row(person, out_row_no="no spaces allowed")])
    assert problem(await office.create(payer, bad_row_no)) == (400, "invalid_request")
    body = office.body([office.row(person)])
    assert problem(await office.create_csv(payer, body, "wrong,header\n1,2\n")) == (400, "invalid_request")
    short = "out_row_no,id_number,name,amount_fen,memo\nr1,500101199001011234,张三\n"
    assert problem(await office.create_csv(payer, body, short)) == (400, "invalid_request")
    quoted = 'out_row_no,id_number,name,amount_fen,memo\nr1,"5001\n'
    assert problem(await office.create_csv(payer, body, quoted)) == (400, "invalid_request")
    unsigned = await office.world.client.post("/v1/disbursements", json=body)
    assert problem(unsigned) == (401, "signature_missing")


async def test_another_merchant_cannot_see_the_batch(office: Office) -> None:
    payer = await office.payer()
    made = await office.create(payer, office.body([office.row(await office.person())]))
    other = await office.payer(name="另一个局")
    answer = await office.world.signed(other, "GET", f"/v1/disbursements/{made.json()['batch_id']}")
    assert problem(answer) == (404, "not_found")
    seen = await office.world.admin("GET", f"/v1/disbursements/{made.json()['batch_id']}")
    assert seen.status_code == 200, seen.text
    assert seen.json()["item_code"] == ALLOWANCE


async def test_row_listing_pages_and_refuses_bad_queries(office: Office) -> None:
    payer = await office.payer()
    rows = [office.row(await office.person(f"页{i}"), out_row_no=f"p{i}") for i in range(5)]
    batch_id = (await office.create(payer, office.body(rows))).json()["batch_id"]
    first = await office.world.signed(payer, "GET", f"/v1/disbursements/{batch_id}/rows?limit=2")
    assert [r["out_row_no"] for r in first.json()["items"]] == ["p0", "p1"]
    after = first.json()["next_after"]
    rest = await office.rows(payer, batch_id, f"?after={after}")
    assert [r["out_row_no"] for r in rest] == ["p2", "p3", "p4"]
    for query in ("?limit=0", "?after=-1", "?after=99999999999", "?status=paidish", "?limit=x"):
        answer = await office.world.signed(payer, "GET", f"/v1/disbursements/{batch_id}/rows{query}")
        assert problem(answer) == (400, "invalid_request"), query
