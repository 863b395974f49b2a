"""What the holder sees of payouts, and the depth report's disbursement level from completed batches."""

from __future__ import annotations

import random
from typing import Any

from tests.disbursements.conftest import ALLOWANCE, Office
from tests.support import World, problem


async def test_the_holder_sees_the_payout_and_another_cards_device_is_refused(office: Office, world: World) -> None:
    payer = await office.payer(funding_fen=100_000, name="武隆区民政局")
    phone = await world.device("陈七")
    holder = {"id_number": phone.ids["id_number"], "name": "陈七"}
    made = (await office.create(payer, office.body([office.row(holder, 35_000, memo="11月低保")]))).json()
    assert (await office.approve(made["batch_id"])).status_code == 200
    assert (await office.settled(payer, made["batch_id"]))["status"] == "completed"
    answer = await world.signed(phone, "GET", f"/v1/cards/{phone.ids['card_id']}/disbursements")
    assert answer.status_code == 200, answer.text
    [payout] = answer.json()["items"]
    assert (payout["payer_name"], payout["item_code"], payout["amount_fen"], payout["memo"]) == (
        "武隆区民政局",
        ALLOWANCE,
        35_000,
        "11月低保",
    )
    assert payout["item_name"]
    assert payout["paid_at"]
    other = await world.device("别人")
    refused = await world.signed(other, "GET", f"/v1/cards/{phone.ids['card_id']}/disbursements")
    assert problem(refused) == (403, "forbidden")
    unsigned = await world.client.get(f"/v1/cards/{phone.ids['card_id']}/disbursements")
    assert problem(unsigned) == (401, "signature_missing")


async def test_the_holders_timeline_shows_the_payout_beside_the_verifications(office: Office, world: World) -> None:
    payer = await office.payer(funding_fen=100_000, name="武隆区民政局")
    phone = await world.device("陈八")
    library = await world.merchant(["wl-030"])
    assert (await world.verify(library, await world.code(phone))).status_code == 200
    holder = {"id_number": phone.ids["id_number"], "name": "陈八"}
    made = (await office.create(payer, office.body([office.row(holder, 12_000, memo="高龄津贴")]))).json()
    assert (await office.approve(made["batch_id"])).status_code == 200
    assert (await office.settled(payer, made["batch_id"]))["status"] == "completed"
    answer = await world.signed(phone, "GET", f"/v1/cards/{phone.ids['card_id']}/history")
    assert answer.status_code == 200, answer.text
    paid, checked = answer.json()["items"]
    assert (paid["kind"], paid["disbursement"]["payer_name"], paid["disbursement"]["amount_fen"]) == (
        "disbursement",
        "武隆区民政局",
        12_000,
    )
    assert (checked["kind"], checked["verification"]["item_code"]) == ("verification", "wl-030")
    assert paid["at"] >= checked["at"]
    other = await world.device("别人")
    refused = await world.signed(other, "GET", f"/v1/cards/{phone.ids['card_id']}/history")
    assert problem(refused) == (403, "forbidden")


async def depth_of(world: World, item_code: str) -> dict[str, Any]:
    answer = await world.admin("GET", "/v1/admin/depth")
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = next(i for i in answer.json()["items"] if i["item_code"] == item_code)
    return found


async def test_depth_comes_from_the_beneficiaries_completed_batches_paid(office: Office, world: World) -> None:
    before = await depth_of(world, ALLOWANCE)
    assert before["levels"]["disbursement"] == 0
    payer = await office.payer(funding_fen=10_000_000)
    people = [await office.person(f"受益人{i}") for i in range(10)]
    # 7 of 10 matched (one with a wrong name, two unknown to the registry), one of them twice
    rows = [office.row(p, 1_000) for p in people[:7]]
    rows.append(office.row({**people[7], "name": "错名"}, 1_000))
    rows += [office.row({"id_number": f"5001011990{random.randint(10**7, 10**8 - 1)}", "name": "无卡"}) for _ in "ab"]
    rows.append(office.row(people[0], 1_000))
    made = (await office.create(payer, office.body(rows))).json()
    # an unapproved batch is not counted
    assert (await depth_of(world, ALLOWANCE))["levels"]["disbursement"] == 0
    assert (await office.approve(made["batch_id"])).status_code == 200
    assert (await office.settled(payer, made["batch_id"]))["status"] == "completed"
    after = await depth_of(world, ALLOWANCE)
    assert after["beneficiaries"]["source"] == "batches"
    assert (after["beneficiaries"]["beneficiaries"], after["beneficiaries"]["paid_by_card"]) == (10, 7)
    assert after["levels"]["disbursement"] == 2
    # the operator's own figures do not count over the service's batches
    year = after["beneficiaries"]["year"]
    path = f"/v1/admin/depth/beneficiaries/{ALLOWANCE}"
    assert (await world.admin("PUT", path, {"year": year, "beneficiaries": 1, "paid_by_card": 1})).status_code == 200
    assert (await depth_of(world, ALLOWANCE))["levels"]["disbursement"] == 2
    csv_answer = await world.client.get(
        "/v1/admin/depth",
        headers={"Authorization": f"Bearer {await world.operator_token()}", "Accept": "text/csv"},
    )
    assert csv_answer.status_code == 200
    assert "batches" in next(line for line in csv_answer.text.splitlines() if line.startswith(f'"{ALLOWANCE}"'))
