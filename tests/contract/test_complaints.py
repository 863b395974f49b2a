"""API.md, "Risk monitoring, complaints and audit": complaints and `GET /v1/service-info`, sent as shown."""

from __future__ import annotations

from tests.contract.support import Integrator, problem_of


async def test_a_citizen_complains_about_a_venue_that_refused_the_card_and_reads_the_reply(api: Integrator) -> None:
    """`POST /v1/complaints` device-signed `{"category","text","merchant_id"}` → 201, then
    `GET /v1/complaints/{complaint_id}` with `Ecard-Tracking-Code` after
    `POST /v1/admin/complaints/{complaint_id}/replies` `{"text","status"}` → 201."""
    phone = await api.phone()
    venue = await api.merchant(["wl-030"], name="武隆区文化馆")

    filed = await api.signed(
        phone,
        "POST",
        "/v1/complaints",
        {"category": "card_refused", "text": "文化馆不认电子社保卡", "merchant_id": venue.ids["merchant_id"]},
    )
    assert filed.status_code == 201, filed.text
    made = filed.json()
    assert {"complaint_id", "tracking_code", "status", "due_at"} <= made.keys()
    assert made["status"] == "received"

    listed = await api.admin("GET", "/v1/admin/complaints?status=received")
    assert made["complaint_id"] in [c["complaint_id"] for c in listed.json()["items"]]
    assert (await api.admin("GET", "/v1/admin/complaints?overdue=true")).json()["items"] == []
    replied = await api.admin(
        "POST",
        f"/v1/admin/complaints/{made['complaint_id']}/replies",
        {"text": "已督促文化馆开通电子社保卡核验", "status": "resolved"},
    )
    assert replied.status_code == 201, replied.text

    by_code = await api.client.get(
        f"/v1/complaints/{made['complaint_id']}", headers={"Ecard-Tracking-Code": made["tracking_code"]}
    )
    by_device = await api.signed(phone, "GET", f"/v1/complaints/{made['complaint_id']}")
    for seen in (by_code, by_device):
        assert seen.status_code == 200, seen.text
        assert seen.json()["status"] == "resolved"
        assert [r["text"] for r in seen.json()["replies"]] == ["已督促文化馆开通电子社保卡核验"]


async def test_the_public_complains_with_every_field_of_the_body(api: Integrator) -> None:
    """No signature, with a `contact`: the body of API.md with its optional fields empty."""
    body = {
        "category": "service",
        "text": "网点工作人员态度差",
        "merchant_id": None,
        "verification_id": None,
        "bill_id": None,
        "contact": "13800000000",
    }

    filed = await api.client.post("/v1/complaints", json=body)

    assert filed.status_code == 201, filed.text
    assert filed.json()["status"] == "received"
    for status in ("accepted", "rejected"):
        answer = await api.admin(
            "POST", f"/v1/admin/complaints/{filed.json()['complaint_id']}/replies", {"text": "答复", "status": status}
        )
        assert answer.status_code == 201, answer.text
    wrong = await api.client.get(
        f"/v1/complaints/{filed.json()['complaint_id']}", headers={"Ecard-Tracking-Code": "0000-0000-0000-0000-0000"}
    )
    assert problem_of(wrong) == (404, "not_found")


async def test_service_info_publishes_the_complaint_phone_and_url(api: Integrator) -> None:
    """`GET /v1/service-info` (public) → `{"complaint_phone","complaint_url", ...}`."""
    answer = await api.client.get("/v1/service-info")

    assert answer.status_code == 200, answer.text
    assert answer.json()["complaint_phone"]
    assert answer.json()["complaint_url"].startswith("http")


async def test_the_operators_list_takes_the_query_as_api_md_writes_it(api: Integrator) -> None:
    """`GET /v1/admin/complaints?status=&overdue=true`: an empty `status` is no filter."""
    phone = await api.phone()
    filed = await api.signed(phone, "POST", "/v1/complaints", {"category": "other", "text": "卡面信息有误"})
    assert filed.status_code == 201, filed.text
    api.parties.clock.advance(16 * 86400)

    answer = await api.admin("GET", "/v1/admin/complaints?status=&overdue=true")

    assert answer.status_code == 200, answer.text
    assert [c["complaint_id"] for c in answer.json()["items"]] == [filed.json()["complaint_id"]]
    assert (await api.admin("GET", "/v1/admin/complaints?status=")).status_code == 200
