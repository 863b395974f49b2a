"""API.md, "Risk monitoring, complaints and audit": the risk events list and resolve, sent as shown, and
`ecard audit verify`'s exit codes (the details of its report are tests/ops/test_audit.py's)."""

from __future__ import annotations

import json
from typing import Any

from tests.contract.support import Integrator, problem_of
from tests.risk.parties import CHENGDU, WULONG, settled, terminal_at
from tests.support import World, ecard_cli

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
    # docs/contract-notes.md "Risk monitoring: rules, actions, the desk": the refusals of the desk
    again = await api.admin("POST", path, {"outcome": "false_positive", "note": "再次处理"})
    assert problem_of(again) == (409, "risk_event_resolved")
    unsigned = await api.client.post(path, json={"outcome": "confirmed", "note": "无会话"})
    assert problem_of(unsigned) == (401, "unauthorized")
    assert problem_of(await api.admin("GET", "/v1/admin/risk/events?status=closed")) == (400, "invalid_request")
    assert (await api.signed(phone, "POST", "/v1/codes", {})).status_code == 201


async def test_ecard_audit_verify_exits_0_when_intact_and_non_zero_naming_the_first_row_that_does_not_chain(
    api: Integrator, world: World
) -> None:
    """`ecard audit verify`: exit 0 when the hash chain is intact; otherwise non-zero, naming the first row."""
    first = await api.cardholder("李四")
    await api.cardholder("王五")
    assert await world.audit_intact()

    intact = await ecard_cli(world, "audit", "verify")

    assert intact.returncode == 0, intact.stderr
    pool = world.app.state.pool
    broken_id = await pool.fetchval("SELECT entry_id FROM audit_log WHERE subject = $1", first["card_id"])
    # an insider edits the row with the append-only trigger off
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
        await conn.execute("UPDATE audit_log SET actor = 'op_innocent' WHERE entry_id = $1", broken_id)
        await conn.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only")
    broken = await ecard_cli(world, "audit", "verify")
    assert broken.returncode != 0
    # the report is JSON (docs/audit.md); the first row is its `broken_entry`
    assert json.loads(broken.stdout)["broken_entry"] == broken_id
