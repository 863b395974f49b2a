"""A complaint about a charge names the bill, which must be one the holder paid (or tried to pay)."""

from __future__ import annotations

from tests.complaints.support import file_from
from tests.payments.conftest import (  # noqa: F401 - the payments tests' bank, merchant server and settings
    Shop,
    bank,
    merchant_server,
    settings,
    shop,
)
from tests.support import World, problem


def _about(bill_id: str) -> dict[str, str]:
    return {"category": "wrong_charge", "text": "水费多扣了一倍", "bill_id": bill_id}


async def test_the_holder_complains_about_a_bill_they_paid_and_nobody_else_can(
    world: World,
    shop: Shop,  # noqa: F811 - the fixture imported above
) -> None:
    water = await shop.merchant()
    payer = await shop.payer()
    other = await shop.payer()
    bill = await shop.bill(water)
    paid = await shop.pay(payer, bill["bill_id"])
    assert paid.status_code == 200, paid.text
    unpaid = await shop.bill(water)

    own = await file_from(world, payer, _about(bill["bill_id"]))
    someone_elses = await file_from(world, other, _about(bill["bill_id"]))
    nobodys_yet = await file_from(world, payer, _about(unpaid["bill_id"]))
    public = await world.client.post("/v1/complaints", json={**_about(bill["bill_id"]), "contact": "13500000000"})

    assert own.status_code == 201, own.text
    case = (await world.admin("GET", f"/v1/admin/complaints/{own.json()['complaint_id']}")).json()
    assert (case["bill_id"], case["merchant_id"]) == (bill["bill_id"], water.ids["merchant_id"])
    for refused in (someone_elses, nobodys_yet, public):
        assert problem(refused) == (403, "complaint_link_refused")
        assert refused.json()["fields"] == ["bill_id"]
