"""Bad input to the complaint channel is a clear 400 naming the field, never a 500 and never a stored complaint."""

from __future__ import annotations

from typing import Any

import pytest

from tests.complaints.support import TRACKING, about_venue, file_from
from tests.support import World, problem

GOOD = {"category": "other", "text": "投诉内容", "contact": "13800000000"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**GOOD, "category": "lost_card"}, "category"),
        ({**GOOD, "category": None}, "category"),
        ({"text": "x", "contact": "1"}, "category"),
        ({"category": "other", "contact": "1"}, "text"),
        ({**GOOD, "text": ""}, "text"),
        ({**GOOD, "text": " \n\t "}, "text"),
        ({**GOOD, "text": "长" * 4001}, "text"),
        ({**GOOD, "text": 42}, "text"),
        ({**GOOD, "contact": ""}, "contact"),
        ({**GOOD, "contact": "   "}, "contact"),
        ({**GOOD, "contact": "1" * 201}, "contact"),
        ({**GOOD, "merchant_id": "mch 1; DROP TABLE complaints"}, "merchant_id"),
        ({**GOOD, "verification_id": "v" * 65}, "verification_id"),
        ({**GOOD, "bill_id": ["bil_1"]}, "bill_id"),
        ({**GOOD, "card_id": "crd_" + "0" * 26}, "card_id"),
        ({**GOOD, "severity": "high"}, "severity"),
    ],
)
async def test_a_body_that_does_not_validate_is_400_naming_the_field(
    world: World, body: dict[str, Any], field: str
) -> None:
    answer = await world.client.post("/v1/complaints", json=body)

    assert problem(answer) == (400, "invalid_request")
    assert field in answer.json()["fields"]
    assert await world.app.state.pool.fetchval("SELECT count(*) FROM complaints") == 0


@pytest.mark.parametrize(
    "raw",
    [b"", b"not json", b"[]", b'"text"', b"{", b'{"category":"other","text":"\xff\xfe","contact":"1"}', b"[" * 5000],
)
async def test_a_body_that_is_not_a_json_object_is_400(world: World, raw: bytes) -> None:
    answer = await world.client.post("/v1/complaints", content=raw, headers={"Content-Type": "application/json"})

    assert problem(answer) == (400, "invalid_request")


async def test_a_device_sends_malformed_bodies_and_gets_the_same_400(world: World) -> None:
    phone = await world.device()

    answer = await file_from(world, phone, {"category": "card_refused"})

    assert problem(answer) == (400, "invalid_request")
    assert answer.json()["fields"] == ["text"]


async def test_text_with_any_character_is_taken_since_it_is_sealed(world: World) -> None:
    text = "控制字符\x00\x07 与 emoji 😡 与 RTL \u202e 都照收"

    answer = await world.client.post("/v1/complaints", json={**GOOD, "text": text})

    assert answer.status_code == 201, answer.text
    case = await world.admin("GET", f"/v1/admin/complaints/{answer.json()['complaint_id']}")
    assert case.json()["text"] == text.strip()


async def test_an_oversized_tracking_code_header_is_400(world: World) -> None:
    filed = (await world.client.post("/v1/complaints", json={**about_venue(), "contact": "1"})).json()

    answer = await world.client.get(f"/v1/complaints/{filed['complaint_id']}", headers={TRACKING: "A" * 65})

    assert problem(answer) == (400, "invalid_request")
