"""What a complaint names (a merchant, a verification, a bill) must be a merchant's, and the holder's own."""

from __future__ import annotations

from tests.complaints.support import about_venue, file_from
from tests.support import Actor, World, problem


async def _verified_at(world: World, phone: Actor, merchant: Actor) -> str:
    answer = await world.verify(merchant, await world.code(phone), "wl-030")
    assert answer.status_code == 200, answer.text
    verification_id: str = answer.json()["verification_id"]
    return verification_id


async def _case(world: World, complaint_id: str) -> dict[str, str]:
    answer = await world.admin("GET", f"/v1/admin/complaints/{complaint_id}")
    assert answer.status_code == 200, answer.text
    case: dict[str, str] = answer.json()
    return case


async def test_a_complaint_about_the_holders_own_verification_names_its_merchant(world: World) -> None:
    phone = await world.device()
    library = await world.merchant(["wl-030"], name="武隆区图书馆")
    verification = await _verified_at(world, phone, library)

    answer = await file_from(
        world, phone, {"category": "data_misuse", "text": "只借书却被记录了姓名", "verification_id": verification}
    )

    assert answer.status_code == 201, answer.text
    case = await _case(world, answer.json()["complaint_id"])
    assert (case["verification_id"], case["merchant_id"]) == (verification, library.ids["merchant_id"])


async def test_someone_elses_verification_is_refused(world: World) -> None:
    victim = await world.device("张小三")
    snoop = await world.device("李四")
    library = await world.merchant(["wl-030"])
    theirs = await _verified_at(world, victim, library)

    from_other_device = await file_from(world, snoop, {**about_venue(), "verification_id": theirs})
    made_up = await file_from(world, snoop, {**about_venue(), "verification_id": "vrf_" + "0" * 26})
    public = await world.client.post(
        "/v1/complaints", json={**about_venue(), "verification_id": theirs, "contact": "13500000000"}
    )

    for refused in (from_other_device, made_up, public):
        assert problem(refused) == (403, "complaint_link_refused")
        assert refused.json()["fields"] == ["verification_id"]
    # someone else's and nobody's read alike
    assert from_other_device.json()["detail"] == made_up.json()["detail"]
    assert await world.app.state.pool.fetchval("SELECT count(*) FROM complaints") == 0


async def test_a_merchant_must_exist_and_agree_with_the_verification(world: World) -> None:
    phone = await world.device()
    library = await world.merchant(["wl-030"], name="武隆区图书馆")
    museum = await world.merchant(["wl-030"], name="武隆博物馆")
    verification = await _verified_at(world, phone, library)

    nobody = await file_from(world, phone, about_venue("mch_" + "0" * 26))
    disagreeing = await file_from(
        world, phone, {**about_venue(museum.ids["merchant_id"]), "verification_id": verification}
    )
    public_about_a_venue = await world.client.post(
        "/v1/complaints", json={**about_venue(museum.ids["merchant_id"]), "contact": "13500000000"}
    )

    assert problem(nobody) == (403, "complaint_link_refused")
    assert nobody.json()["fields"] == ["merchant_id"]
    assert problem(disagreeing) == (403, "complaint_link_refused")
    assert disagreeing.json()["fields"] == ["verification_id"]
    assert public_about_a_venue.status_code == 201, public_about_a_venue.text
    case = await _case(world, public_about_a_venue.json()["complaint_id"])
    assert case["merchant_id"] == museum.ids["merchant_id"]
