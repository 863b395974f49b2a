"""The operators' desk: what is overdue, replies that set the status, and what a closed complaint takes."""

from __future__ import annotations

import dataclasses
from datetime import datetime

import pytest

from ecard.complaints import ComplaintPolicy, Complaints
from ecard.complaints.models import NewComplaint
from ecard.config import Settings
from ecard.kit.principal import ClientKind, Principal
from tests.complaints.support import about_venue, audit_actions, file_from
from tests.support import World, problem

DAY = 86400


async def _reply(world: World, complaint_id: str, status: str, text: str = "处理意见") -> int:
    answer = await world.admin("POST", f"/v1/admin/complaints/{complaint_id}/replies", {"text": text, "status": status})
    return answer.status_code


async def _ids(world: World, query: str) -> list[str]:
    answer = await world.admin("GET", f"/v1/admin/complaints{query}")
    assert answer.status_code == 200, answer.text
    return [c["complaint_id"] for c in answer.json()["items"]]


async def test_complaints_past_their_due_date_and_still_open_are_listed_as_overdue(world: World) -> None:
    phone = await world.device()
    first = (await file_from(world, phone, about_venue())).json()["complaint_id"]
    world.clock.advance(DAY)
    second = (await file_from(world, phone, about_venue())).json()["complaint_id"]
    world.clock.advance(10 * DAY)
    recent = (await file_from(world, phone, about_venue())).json()["complaint_id"]
    assert await _ids(world, "?overdue=true") == []

    world.clock.advance(5 * DAY)  # 16 days after the first, 15 after the second, 5 after the recent one

    assert await _ids(world, "?overdue=true") == [first, second]
    assert await _ids(world, "") == [first, second, recent]
    listed = (await world.admin("GET", "/v1/admin/complaints")).json()["items"]
    assert [c["overdue"] for c in listed] == [True, True, False]
    # an accepted complaint is still open, and still overdue; a resolved or rejected one is neither
    assert await _reply(world, first, "accepted") == 201
    assert await _reply(world, second, "rejected") == 201
    assert await _ids(world, "?overdue=true") == [first]
    assert await _ids(world, "?status=rejected") == [second]
    assert await _ids(world, "?status=received") == [recent]
    assert await _ids(world, "?status=accepted&overdue=true") == [first]
    case = (await world.admin("GET", f"/v1/admin/complaints/{second}")).json()
    assert (case["status"], case["overdue"]) == ("rejected", False)


async def test_a_resolved_or_rejected_complaint_takes_no_further_reply(world: World) -> None:
    phone = await world.device()
    complaint = (await file_from(world, phone, about_venue())).json()["complaint_id"]
    assert await _reply(world, complaint, "accepted") == 201
    assert await _reply(world, complaint, "accepted", "补充说明") == 201
    assert await _reply(world, complaint, "resolved") == 201

    answer = await world.admin(
        "POST", f"/v1/admin/complaints/{complaint}/replies", {"text": "再次处理", "status": "accepted"}
    )

    assert problem(answer) == (409, "complaint_closed")
    view = (await world.signed(phone, "GET", f"/v1/complaints/{complaint}")).json()
    assert [r["status"] for r in view["replies"]] == ["accepted", "accepted", "resolved"]
    assert (await audit_actions(world, complaint)).count("complaint.replied") == 3
    replied = await world.app.state.pool.fetch(
        "SELECT actor, detail FROM audit_log WHERE subject = $1 AND action = 'complaint.replied' ORDER BY entry_id",
        complaint,
    )
    assert [(r["detail"]["was"], r["detail"]["status"]) for r in replied] == [
        ("received", "accepted"),
        ("accepted", "accepted"),
        ("accepted", "resolved"),
    ]
    assert all(r["actor"].startswith("op_") for r in replied)


async def test_replies_are_refused_without_a_session_a_known_complaint_or_a_valid_body(world: World) -> None:
    phone = await world.device()
    complaint = (await file_from(world, phone, about_venue())).json()["complaint_id"]
    path = f"/v1/admin/complaints/{complaint}/replies"

    no_session = await world.client.post(path, json={"text": "x", "status": "accepted"})
    unknown = await world.admin(
        "POST", f"/v1/admin/complaints/cmp_{'0' * 26}/replies", {"text": "x", "status": "resolved"}
    )
    not_an_id = await world.admin("POST", "/v1/admin/complaints/whatever/replies", {"text": "x", "status": "resolved"})
    bad_status = await world.admin("POST", path, {"text": "x", "status": "received"})
    blank = await world.admin("POST", path, {"text": "   ", "status": "accepted"})
    missing = await world.admin("POST", path, {"status": "accepted"})

    assert problem(no_session) == (401, "unauthorized")
    assert problem(unknown) == (404, "not_found")
    assert problem(not_an_id) == (404, "not_found")
    for refused, field in ((bad_status, "status"), (blank, "text"), (missing, "text")):
        assert problem(refused) == (400, "invalid_request")
        assert field in refused.json()["fields"]
    assert problem(await world.client.get("/v1/admin/complaints")) == (401, "unauthorized")
    assert problem(await world.client.get(f"/v1/admin/complaints/{complaint}")) == (401, "unauthorized")
    assert problem(await world.admin("GET", "/v1/admin/complaints?status=lost")) == (400, "invalid_request")
    assert problem(await world.admin("GET", "/v1/admin/complaints?overdue=maybe")) == (400, "invalid_request")
    assert (await world.signed(phone, "GET", f"/v1/complaints/{complaint}")).json()["status"] == "received"


async def test_the_due_date_follows_the_setting(world: World) -> None:
    state = world.app.state
    complaints = Complaints(
        state.pool,
        state.redis,
        state.secret_keys,
        world.clock,
        state.settings.redis_prefix,
        ComplaintPolicy(due_days=3),
    )
    phone = await world.device()
    device = Principal(phone.key_id, ClientKind.DEVICE, phone.ids["device_id"], phone.ids["card_id"])
    filed_at = world.clock.now()

    filed = await complaints.file(NewComplaint(category="service", text="窗口无人"), device, "192.0.2.1")

    assert abs(datetime.fromisoformat(filed.due_at).timestamp() - (filed_at + 3 * DAY)) < 5
    assert Settings.from_env({"ECARD_COMPLAINT_DUE_DAYS": "30"}).complaint_due_days == 30
    assert Settings.from_env({}).complaint_due_days == 15


def test_the_complaint_settings_come_from_the_environment() -> None:
    settings = Settings.from_env(
        {
            "ECARD_COMPLAINT_PHONE": "023-12333",
            "ECARD_COMPLAINT_URL": "https://ecard.cq.gov.cn/complaints",
            "ECARD_COMPLAINT_PER_SOURCE": "2",
            "ECARD_COMPLAINT_PER_CARD": "3",
            "ECARD_COMPLAINT_WINDOW_S": "60",
        }
    )

    assert (settings.complaint_phone, settings.complaint_url) == ("023-12333", "https://ecard.cq.gov.cn/complaints")
    assert (settings.complaint_per_source, settings.complaint_per_card, settings.complaint_window_s) == (2, 3, 60)
    with pytest.raises(ValueError, match="ECARD_COMPLAINT_DUE_DAYS"):
        Settings.from_env({"ECARD_COMPLAINT_DUE_DAYS": "fifteen"})


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return dataclasses.replace(settings, complaint_phone="023-88888888", complaint_url="https://ecard.cq.gov.cn/tousu")


async def test_service_info_publishes_the_configured_phone_and_url(world: World) -> None:
    info = (await world.client.get("/v1/service-info")).json()

    assert (info["complaint_phone"], info["complaint_url"]) == ("023-88888888", "https://ecard.cq.gov.cn/tousu")
