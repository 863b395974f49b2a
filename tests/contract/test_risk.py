"""API.md, "Risk monitoring, complaints and audit": the risk events list and resolve, sent as shown.

`ecard audit verify`'s exit codes are asserted in tests/ops/test_audit.py.
"""

from __future__ import annotations

from typing import Any

from tests.contract.support import Integrator, problem_of
from tests.risk.parties import CHENGDU, WULONG, settled, terminal_at
from tests.support import World

LISTED = {"event_id", "kind", "severity", "card_id", "merchant_id", "detail", "raised_at", "status", "action"}
# docs/contract-notes.md "Risk monitoring: rules, actions, the desk": each item also carries these
ADDED = {"outcome", "note", "resolved_at"}


async def _events(api: Integrator, query: str) -> list[dict[str, Any]]:
    answer = await api.admin("GET", f"/v1/admin/risk/events?{query}")
    assert answer.status_code == 200, answer.text
    assert set(answer.json()) == {"items"}
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


async def test_impossible_travel_is_listed_with_its_fields_and_a_false_positive_gives_the_card_back(
    api: Integrator, world: World
) -> None:
    """`GET /v1/admin/risk/events?kind=&card_id=&status=open` → `{"items":[{...the listed fields}]}`, `action`
    `suspended`; `POST .../resolve` `{"outcome":"false_positive","note"}` → 200 and the card is active again."""
    library = await api.merchant(["wl-030"])
    wulong = await terminal_at(world, library, "wl-gate", WULONG)
    chengdu = await terminal_at(world, library, "cd-gate", CHENGDU, region="chengdu")
    phone = await api.phone()
    card_id = phone.ids["card_id"]
    assert (await api.verify(wulong, await api.code(phone), "wl-030")).status_code == 200
    world.clock.advance(60)
    assert (await api.verify(chengdu, await api.code(phone), "wl-030")).status_code == 200
    await settled(world)

    [event] = await _events(api, f"kind=impossible_travel&card_id={card_id}&status=open")

    assert LISTED <= set(event) <= LISTED | ADDED
    assert (event["kind"], event["card_id"], event["status"], event["action"]) == (
        "impossible_travel",
        card_id,
        "open",
        "suspended",
    )
    assert event["merchant_id"] == library.ids["merchant_id"]
    assert problem_of(await api.signed(phone, "POST", "/v1/codes", {})) == (403, "card_suspended")
    path = f"/v1/admin/risk/events/{event['event_id']}/resolve"
    resolved = await api.admin("POST", path, {"outcome": "false_positive", "note": "持卡人乘飞机出行"})
    assert resolved.status_code == 200, resolved.text
    assert (await api.signed(phone, "POST", "/v1/codes", {})).status_code == 201
    assert [e["event_id"] for e in await _events(api, f"card_id={card_id}&status=resolved")] == [event["event_id"]]
    assert await _events(api, f"kind=impossible_travel&card_id={card_id}&status=open") == []


async def test_a_code_replay_is_listed_and_resolved_as_confirmed(api: Integrator, world: World) -> None:
    """Kind `code_replay`, `action` `none`; `{"outcome":"confirmed","note"}` → 200, the event is `resolved`."""
    library = await api.merchant(["wl-030"])
    phone = await api.phone()
    card_id = phone.ids["card_id"]
    code = await api.code(phone)
    assert (await api.verify(library, code, "wl-030")).status_code == 200
    assert problem_of(await api.verify(library, code, "wl-030")) == (409, "code_already_used")
    await settled(world)

    [event] = await _events(api, f"kind=code_replay&card_id={card_id}&status=open")

    assert LISTED <= set(event) <= LISTED | ADDED
    assert event["action"] == "none"
    path = f"/v1/admin/risk/events/{event['event_id']}/resolve"
    resolved = await api.admin("POST", path, {"outcome": "confirmed", "note": "已联系商户"})
    assert resolved.status_code == 200, resolved.text
    [done] = await _events(api, f"kind=code_replay&card_id={card_id}&status=resolved")
    assert done["status"] == "resolved"
    assert (await api.signed(phone, "POST", "/v1/codes", {})).status_code == 201
