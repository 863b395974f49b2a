"""A citizen files a complaint from the phone or from anywhere, keeps the tracking code, and reads the reply."""

from __future__ import annotations

from datetime import datetime

from tests.complaints.support import TRACKING, about_venue, audit_actions, file_from, from_address, read_with_code
from tests.support import World, problem

DAY = 86400


def _at(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


async def test_the_holder_files_from_the_phone_and_reads_the_operators_reply_there(world: World) -> None:
    phone = await world.device()
    library = await world.merchant(["wl-030"], name="武隆区图书馆")
    filed_at = world.clock.now()

    answer = await file_from(world, phone, about_venue(library.ids["merchant_id"]))

    assert answer.status_code == 201, answer.text
    filed = answer.json()
    assert filed["status"] == "received"
    assert filed["complaint_id"].startswith("cmp_")
    assert len(filed["tracking_code"].replace("-", "")) == 20
    assert abs(_at(filed["due_at"]) - (filed_at + 15 * DAY)) < 5

    # the desk sees it, reads it and answers twice: accepted, then resolved
    listed = (await world.admin("GET", "/v1/admin/complaints")).json()["items"]
    assert [(c["complaint_id"], c["channel"], c["card_id"]) for c in listed] == [
        (filed["complaint_id"], "device", phone.ids["card_id"])
    ]
    assert "text" not in listed[0]
    case = await world.admin("GET", f"/v1/admin/complaints/{filed['complaint_id']}")
    assert case.status_code == 200, case.text
    assert case.json()["text"] == about_venue()["text"]
    assert case.json()["merchant_id"] == library.ids["merchant_id"]
    accepted = await world.admin(
        "POST",
        f"/v1/admin/complaints/{filed['complaint_id']}/replies",
        {"text": "已受理, 正在核实", "status": "accepted"},
    )
    assert accepted.status_code == 201, accepted.text
    world.clock.advance(2 * DAY)
    resolved = await world.admin(
        "POST",
        f"/v1/admin/complaints/{filed['complaint_id']}/replies",
        {"text": "已通知图书馆更新闸机, 并向您致歉", "status": "resolved"},
    )
    assert resolved.status_code == 201, resolved.text

    seen = await world.signed(phone, "GET", f"/v1/complaints/{filed['complaint_id']}")

    assert seen.status_code == 200, seen.text
    view = seen.json()
    assert view["status"] == "resolved"
    assert [(r["status"], r["text"]) for r in view["replies"]] == [
        ("accepted", "已受理, 正在核实"),
        ("resolved", "已通知图书馆更新闸机, 并向您致歉"),
    ]
    assert "operator_id" not in view["replies"][0]
    # the tracking code opens the same view, and the phone lists the card's complaints
    assert (await read_with_code(world.client, filed["complaint_id"], filed["tracking_code"])).json() == view
    mine = await world.signed(phone, "GET", f"/v1/cards/{phone.ids['card_id']}/complaints")
    assert [c["status"] for c in mine.json()["items"]] == ["resolved"]
    assert await audit_actions(world, filed["complaint_id"]) == [
        "complaint.filed",
        "complaint.read",
        "complaint.replied",
        "complaint.replied",
    ]
    assert await world.audit_intact()


async def test_anyone_files_with_a_contact_and_reads_the_reply_with_the_tracking_code(world: World) -> None:
    answer = await world.client.post(
        "/v1/complaints",
        json={"category": "service", "text": "社保卡服务网点排队两小时", "contact": "13800000000"},
    )

    assert answer.status_code == 201, answer.text
    filed = answer.json()
    case = (await world.admin("GET", f"/v1/admin/complaints/{filed['complaint_id']}")).json()
    assert (case["channel"], case["contact"], case["card_id"]) == ("public", "13800000000", None)
    await world.admin(
        "POST", f"/v1/admin/complaints/{filed['complaint_id']}/replies", {"text": "已增开窗口", "status": "resolved"}
    )
    # typed back by hand: lower case, without the dashes, an O for a 0
    typed = filed["tracking_code"].replace("-", "").lower().replace("0", "o")
    seen = await read_with_code(world.client, filed["complaint_id"], typed)
    assert seen.status_code == 200, seen.text
    assert seen.json()["status"] == "resolved"
    assert [r["text"] for r in seen.json()["replies"]] == ["已增开窗口"]
    assert "contact" not in seen.json()


async def test_a_complaint_without_the_holders_device_needs_a_contact(world: World) -> None:
    answer = await world.client.post("/v1/complaints", json={"category": "other", "text": "没有留联系方式"})

    assert problem(answer) == (400, "invalid_request")
    assert answer.json()["fields"] == ["contact"]
    assert await world.app.state.pool.fetchval("SELECT count(*) FROM complaints") == 0


async def test_a_complaint_from_a_suspended_card_is_still_taken(world: World) -> None:
    phone = await world.device()
    await world.set_status(phone.ids["card_id"], "suspended", "risk")

    answer = await file_from(world, phone, {"category": "other", "text": "我的卡被无故冻结"})

    assert answer.status_code == 201, answer.text


async def test_another_cards_device_can_neither_read_nor_file_for_the_card(world: World) -> None:
    holder = await world.device("张小三")
    other = await world.device("李四")
    filed = (await file_from(world, holder, about_venue())).json()

    read = await world.signed(other, "GET", f"/v1/complaints/{filed['complaint_id']}")
    listed = await world.signed(other, "GET", f"/v1/cards/{holder.ids['card_id']}/complaints")
    for_them = await file_from(world, other, {**about_venue(), "card_id": holder.ids["card_id"]})

    assert problem(read) == (404, "not_found")
    assert problem(listed) == (403, "forbidden")
    assert problem(for_them) == (403, "forbidden")
    assert (await world.signed(holder, "GET", f"/v1/complaints/{filed['complaint_id']}")).status_code == 200
    # a public complaint is nobody's device's to read
    public = (await world.client.post("/v1/complaints", json={**about_venue(), "contact": "wechat: zhang3"})).json()
    assert problem(await world.signed(holder, "GET", f"/v1/complaints/{public['complaint_id']}")) == (404, "not_found")


async def test_a_wrong_or_forged_tracking_code_reads_nothing(world: World) -> None:
    phone = await world.device()
    mine = (await file_from(world, phone, about_venue())).json()
    theirs = (await world.client.post("/v1/complaints", json={**about_venue(), "contact": "13900000000"})).json()
    same_shape = "-".join(["ZZZZ"] * 5)

    answers = [
        await read_with_code(world.client, mine["complaint_id"], same_shape),
        await read_with_code(world.client, mine["complaint_id"], theirs["tracking_code"]),
        await read_with_code(world.client, mine["complaint_id"], mine["tracking_code"][:-1] + "!"),
        await read_with_code(world.client, mine["complaint_id"], ""),
        # a made-up complaint id with a real code answers the same as a real one with a wrong code
        await read_with_code(world.client, "cmp_" + "0" * 26, mine["tracking_code"]),
        await read_with_code(world.client, "not-an-id", mine["tracking_code"]),
    ]

    assert [problem(a) for a in answers] == [(404, "not_found")] * len(answers)
    assert len({a.json()["detail"] for a in answers}) == 1
    assert problem(await world.client.get(f"/v1/complaints/{mine['complaint_id']}")) == (401, "unauthorized")
    # the stored hash is no tracking code: sending it back opens nothing
    stored = await world.app.state.pool.fetchval(
        "SELECT tracking_hash FROM complaints WHERE complaint_id = $1", mine["complaint_id"]
    )
    assert problem(await read_with_code(world.client, mine["complaint_id"], bytes(stored).hex())) == (
        404,
        "not_found",
    )
    assert (await read_with_code(world.client, mine["complaint_id"], mine["tracking_code"])).status_code == 200


async def test_a_signature_that_does_not_hold_is_refused_not_taken_as_anonymous(world: World) -> None:
    phone = await world.device()
    merchant = await world.merchant(["wl-030"])
    body = {**about_venue(), "contact": "13700000000"}

    forged = await world.client.post(
        "/v1/complaints",
        json=body,
        headers={"Signature-Input": 'sig1=("@method");created=1;nonce="x";keyid="key_x";alg="ed25519"'},
    )
    by_merchant = await world.signed(merchant, "POST", "/v1/complaints", body)
    replayed_nonce = await world.signed(phone, "POST", "/v1/complaints", about_venue(), nonce="same-nonce-1")
    again = await world.signed(phone, "POST", "/v1/complaints", about_venue(), nonce="same-nonce-1")

    assert problem(forged)[0] == 401
    assert problem(by_merchant)[0] in {401, 403}
    assert replayed_nonce.status_code == 201, replayed_nonce.text
    assert problem(again) == (401, "nonce_reused")
    assert await world.app.state.pool.fetchval("SELECT count(*) FROM complaints") == 1


async def test_filings_from_one_address_are_limited_and_the_next_window_opens_again(world: World) -> None:
    body = {"category": "other", "text": "测试投诉", "contact": "13600000000"}
    async with from_address(world, "198.51.100.7") as flooder, from_address(world, "192.0.2.10") as neighbour:
        for _ in range(5):
            assert (await flooder.post("/v1/complaints", json=body)).status_code == 201

        throttled = await flooder.post("/v1/complaints", json=body)

        assert problem(throttled) == (429, "too_many_requests")
        wait = int(throttled.headers["retry-after"])
        assert 1 <= wait <= 3600
        assert (await neighbour.post("/v1/complaints", json=body)).status_code == 201
        world.clock.advance(wait)
        assert (await flooder.post("/v1/complaints", json=body)).status_code == 201
    assert await world.app.state.pool.fetchval("SELECT count(*) FROM complaints") == 7


async def test_filings_from_one_card_are_limited_too(world: World) -> None:
    phone = await world.device()
    for _ in range(20):
        assert (await file_from(world, phone, about_venue())).status_code == 201

    assert problem(await file_from(world, phone, about_venue())) == (429, "too_many_requests")


async def test_the_service_publishes_where_to_complain(world: World) -> None:
    answer = await world.client.get("/v1/service-info")

    assert answer.status_code == 200, answer.text
    info = answer.json()
    assert info["complaint_phone"] == "12333"
    assert info["complaint_url"] == "http://127.0.0.1:8000/v1/complaints"
    assert info["complaint_due_days"] == 15
    assert TRACKING not in info
