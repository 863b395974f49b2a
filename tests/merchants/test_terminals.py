"""Terminals: registered with a place and a key of their own, they verify as their merchant, where they stand."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support import Actor, World, ed25519_actor, p256_actor, problem

PLACE = {
    "name": "武隆区图书馆一楼服务台",
    "address": "武隆区芙蓉中路1号",
    "region": "wulong",
    "lat": 29.325,
    "lon": 107.76,
}


async def register(world: World, merchant_id: str, terminal_id: str = "gate-1", **changes: Any) -> httpx.Response:
    body: dict[str, Any] = {"terminal_id": terminal_id, "place": PLACE, "public_key": ed25519_actor().jwk, **changes}
    return await world.admin("POST", f"/v1/admin/merchants/{merchant_id}/terminals", body)


async def set_terminal_status(world: World, terminal: Actor, status: str) -> httpx.Response:
    path = f"/v1/admin/merchants/{terminal.ids['merchant_id']}/terminals/{terminal.ids['terminal_id']}/status"
    return await world.admin("POST", path, {"status": status})


async def set_merchant_status(world: World, merchant: Actor, status: str) -> None:
    answer = await world.admin("POST", f"/v1/admin/merchants/{merchant.ids['merchant_id']}/status", {"status": status})
    assert answer.status_code == 200, answer.text


async def test_a_terminal_is_registered_with_its_place(world: World) -> None:
    library = await world.merchant(["wl-030"])

    answer = await register(world, library.ids["merchant_id"])

    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["terminal_id"] == "gate-1"
    assert body["key_id"].startswith("key_")
    assert body["place"] == PLACE
    row = await world.app.state.pool.fetchrow(
        "SELECT kind, parent_id, status FROM client_keys WHERE key_id = $1", body["key_id"]
    )
    assert dict(row) == {"kind": "terminal", "parent_id": library.ids["merchant_id"], "status": "active"}


async def test_a_terminal_id_is_unique_per_merchant(world: World) -> None:
    library = await world.merchant(["wl-030"])
    museum = await world.merchant(["wl-031"], name="武隆博物馆")
    assert (await register(world, library.ids["merchant_id"])).status_code == 201

    again = await register(world, library.ids["merchant_id"])
    elsewhere = await register(world, museum.ids["merchant_id"])

    assert problem(again) == (409, "terminal_exists")
    assert elsewhere.status_code == 201, elsewhere.text
    assert await world.app.state.pool.fetchval("SELECT count(*) FROM client_keys WHERE kind = 'terminal'") == 2


@pytest.mark.parametrize(
    ("place", "field"),
    [
        ({**PLACE, "lat": 90.5}, "place.lat"),
        ({**PLACE, "lat": -91}, "place.lat"),
        ({**PLACE, "lon": 180.01}, "place.lon"),
        ({**PLACE, "lon": -181}, "place.lon"),
        ({**PLACE, "region": "Wu Long"}, "place.region"),
        ({**PLACE, "name": "台\x00"}, "place.name"),
        ({**PLACE, "name": "   "}, "place.name"),
        # a missing or unknown field inside the place is reported against the place
        ({k: v for k, v in PLACE.items() if k != "address"}, "place"),
        ({**PLACE, "floor": 1}, "place"),
    ],
)
async def test_a_place_must_be_complete_and_on_the_globe(world: World, place: dict[str, Any], field: str) -> None:
    library = await world.merchant(["wl-030"])

    answer = await register(world, library.ids["merchant_id"], place=place)

    assert problem(answer) == (400, "invalid_request")
    assert any(field in named for named in answer.json()["fields"]), answer.json()
    assert await world.app.state.pool.fetchval("SELECT count(*) FROM terminals") == 0


@pytest.mark.parametrize("terminal_id", ["", "a" * 65, "gate\n1"])
async def test_a_terminal_id_must_be_printable_and_short(world: World, terminal_id: str) -> None:
    library = await world.merchant(["wl-030"])

    answer = await register(world, library.ids["merchant_id"], terminal_id)

    assert problem(answer) == (400, "invalid_request")
    assert answer.json()["fields"] == ["terminal_id"]


async def test_a_terminal_of_an_unknown_merchant_is_not_found(world: World) -> None:
    answer = await register(world, "mch_0000000000000000000000000")

    assert problem(answer) == (404, "not_found")


async def test_terminal_endpoints_need_an_operator(world: World) -> None:
    library = await world.merchant(["wl-030"])
    base = f"/v1/admin/merchants/{library.ids['merchant_id']}/terminals"

    added = await world.client.post(base, json={"terminal_id": "t", "place": PLACE, "public_key": ed25519_actor().jwk})
    status = await world.client.post(f"{base}/t/status", json={"status": "disabled"})

    assert problem(added) == (401, "unauthorized")
    assert problem(status) == (401, "unauthorized")


async def test_a_terminal_verifies_as_its_merchant_and_is_recorded_where_it_stands(world: World) -> None:
    library = await world.merchant(["wl-030"])
    gate = await world.terminal(library, "gate-1", actor=p256_actor())
    phone = await world.device()

    at_gate = await world.verify(gate, await world.code(phone), "wl-030", place={"name": "somewhere else"})
    at_desk = await world.verify(library, await world.code(phone), "wl-030")

    assert at_gate.status_code == 200, at_gate.text
    assert at_desk.status_code == 200, at_desk.text
    # the same merchant, so the same pseudonym for the same holder
    assert at_gate.json()["card"]["pseudonym"] == at_desk.json()["card"]["pseudonym"]
    history = await world.signed(phone, "GET", f"/v1/cards/{phone.ids['card_id']}/verifications")
    assert history.status_code == 200, history.text
    by_id = {entry["verification_id"]: entry for entry in history.json()["items"]}
    seen = by_id[at_gate.json()["verification_id"]]
    assert seen["terminal_id"] == "gate-1"
    assert seen["merchant_name"] == "武隆区图书馆"
    assert seen["place"] == {
        "name": "gate-1服务台",
        "address": "武隆区芙蓉路1号",
        "region": "wulong",
        "lat": 29.32,
        "lon": 107.76,
    }
    row = await world.app.state.pool.fetchrow(
        "SELECT merchant_id, terminal_id FROM verifications WHERE verification_id = $1",
        at_gate.json()["verification_id"],
    )
    assert dict(row) == {"merchant_id": library.ids["merchant_id"], "terminal_id": "gate-1"}


async def test_a_terminal_may_name_itself_but_no_other_terminal(world: World) -> None:
    library = await world.merchant(["wl-030"])
    gate = await world.terminal(library, "gate-1")
    await world.terminal(library, "gate-2")
    phone = await world.device()
    code = await world.code(phone)

    posing = await world.verify(gate, code, "wl-030", terminal_id="gate-2")
    itself = await world.verify(gate, code, "wl-030", terminal_id="gate-1")

    assert problem(posing) == (403, "forbidden")
    # refused before the code was looked at: the holder's code still works
    assert itself.status_code == 200, itself.text
    assert await world.app.state.pool.fetchval("SELECT count(*) FROM verifications") == 1


async def test_a_terminal_is_held_to_its_merchants_entitlements(world: World) -> None:
    library = await world.merchant(["wl-030"])
    gate = await world.terminal(library, "gate-1")
    phone = await world.device()

    answer = await world.verify(gate, await world.code(phone), "wl-031")

    assert problem(answer) == (403, "merchant_not_entitled")


async def test_a_disabled_terminal_is_refused_until_re_enabled(world: World) -> None:
    library = await world.merchant(["wl-030"])
    gate = await world.terminal(library, "gate-1")
    phone = await world.device()
    code = await world.code(phone)

    off = await set_terminal_status(world, gate, "disabled")
    refused = await world.verify(gate, code, "wl-030")
    desk = await world.verify(library, await world.code(phone), "wl-030")
    on = await set_terminal_status(world, gate, "active")
    accepted = await world.verify(gate, code, "wl-030")

    assert off.status_code == 200, off.text
    assert off.json() == {"merchant_id": library.ids["merchant_id"], "terminal_id": "gate-1", "status": "disabled"}
    assert problem(refused) == (403, "client_disabled")
    assert desk.status_code == 200, desk.text  # the merchant's own key is not the terminal's
    assert on.status_code == 200, on.text
    assert accepted.status_code == 200, accepted.text
    actions = [r["action"] for r in await world.app.state.pool.fetch("SELECT action FROM audit_log ORDER BY entry_id")]
    assert [a for a in actions if a.startswith("terminal.")] == [
        "terminal.registered",
        "terminal.disabled",
        "terminal.active",
    ]
    assert await world.audit_intact()


async def test_the_status_of_an_unknown_terminal_is_not_found(world: World) -> None:
    library = await world.merchant(["wl-030"])
    base = f"/v1/admin/merchants/{library.ids['merchant_id']}/terminals"

    unknown = await world.admin("POST", f"{base}/gate-9/status", {"status": "disabled"})
    bad = await world.admin("POST", f"{base}/gate-9/status", {"status": "broken"})

    assert problem(unknown) == (404, "not_found")
    assert problem(bad) == (400, "invalid_request")


async def test_a_disabled_merchant_takes_its_terminals_with_it(world: World) -> None:
    library = await world.merchant(["wl-030"])
    gate = await world.terminal(library, "gate-1")
    phone = await world.device()

    await set_merchant_status(world, library, "disabled")
    refused = await world.verify(gate, await world.code(phone), "wl-030")
    await set_merchant_status(world, library, "active")
    accepted = await world.verify(gate, await world.code(phone), "wl-030")

    assert problem(refused) == (403, "client_disabled")
    assert accepted.status_code == 200, accepted.text


async def test_re_enabling_a_merchant_leaves_a_terminal_disabled_on_its_own_disabled(world: World) -> None:
    library = await world.merchant(["wl-030"])
    gate = await world.terminal(library, "gate-1")
    hall = await world.terminal(library, "hall-1")
    phone = await world.device()
    await set_terminal_status(world, gate, "disabled")

    await set_merchant_status(world, library, "disabled")
    await set_merchant_status(world, library, "active")

    assert problem(await world.verify(gate, await world.code(phone), "wl-030")) == (403, "client_disabled")
    assert (await world.verify(hall, await world.code(phone), "wl-030")).status_code == 200


async def test_a_terminal_enabled_under_a_disabled_merchant_waits_for_its_merchant(world: World) -> None:
    library = await world.merchant(["wl-030"])
    gate = await world.terminal(library, "gate-1")
    phone = await world.device()
    await set_terminal_status(world, gate, "disabled")
    await set_merchant_status(world, library, "disabled")

    on = await set_terminal_status(world, gate, "active")
    late = await world.terminal(library, "gate-2")
    refused = [await world.verify(t, await world.code(phone), "wl-030") for t in (gate, late)]
    await set_merchant_status(world, library, "active")
    accepted = [await world.verify(t, await world.code(phone), "wl-030") for t in (gate, late)]

    assert on.status_code == 200, on.text
    assert [problem(a) for a in refused] == [(403, "client_disabled")] * 2
    assert [a.status_code for a in accepted] == [200, 200]


async def test_a_terminal_key_cannot_do_a_devices_work(world: World) -> None:
    library = await world.merchant(["wl-030"])
    gate = await world.terminal(library, "gate-1")

    answer = await world.signed(gate, "POST", "/v1/codes", {})

    assert problem(answer) == (403, "forbidden")
