"""A bus uploads yesterday's offline taps: each judged as of its time, the same answers when it uploads again."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from ecard.kit.clock import iso
from ecard.kit.signing import sign_request
from tests.support import Actor, World, ed25519_actor, problem

HOUR = 3600.0


async def _code_at(world: World, device: Actor, offset: float) -> tuple[str, float]:
    """A code the rider's phone showed at `offset` seconds from now, and that moment."""
    world.clock.offset = offset
    code = await world.code(device)
    return code, world.clock.now()


def _tap(tap_id: str, code: str, at: float, item_code: str = "wl-029") -> dict[str, str]:
    return {"tap_id": tap_id, "code": code, "item_code": item_code, "tapped_at": iso(at)}


async def _upload(world: World, bus: Actor, taps: list[dict[str, str]]) -> Any:
    answer = await world.signed(bus, "POST", "/v1/offline-taps", {"taps": taps})
    assert answer.status_code == 200, answer.text
    return answer.json()


async def _risk(world: World) -> list[tuple[str, str]]:
    rows = await world.app.state.pool.fetch("SELECT kind, card_id FROM risk_events ORDER BY event_id")
    return [(r["kind"], r["card_id"]) for r in rows]


async def test_a_bus_uploads_a_day_of_taps_twice_and_gets_the_same_answers(world: World) -> None:
    transit = await world.merchant(["wl-029"], name="武隆公交")
    bus = await world.terminal(transit, "bus-101")
    alice, bob, carol = await world.device("张小三"), await world.device("李四"), await world.device("王老五")
    grace = world.app.state.settings.offline_grace_s
    ttl = world.app.state.settings.code_ttl_s

    # two days ago Carol's phone cached a code; she shows it again today, beyond its expiry plus the grace
    stale, stale_at = await _code_at(world, carol, -(ttl + grace + 12 * HOUR))
    alice_code, alice_at = await _code_at(world, alice, -10 * HOUR)
    bob_code, bob_at = await _code_at(world, bob, -9 * HOUR)
    carol_code, carol_at = await _code_at(world, carol, -8 * HOUR)
    # Bob's phone shows a code just before he reports it lost; the thief taps it a little later
    stolen, stolen_at = await _code_at(world, bob, -20)
    world.clock.offset = 0
    assert (await world.signed(bob, "POST", f"/v1/cards/{bob.ids['card_id']}/report-lost")).status_code == 200

    taps = [
        _tap("t-001", alice_code, alice_at + 5),
        _tap("t-002", bob_code, bob_at + 5),
        # the same tap stored twice by the terminal: one tap, one answer
        _tap("t-002", bob_code, bob_at + 5),
        _tap("t-003", carol_code, carol_at + 5),
        # Alice's phone, offline, shows the same code on the way home
        _tap("t-004", alice_code, alice_at + 8 * HOUR),
        _tap("t-005", stale, stale_at + ttl + grace + 60),
        _tap("t-006", stolen, stolen_at + 40),
    ]
    world.clock.offset = 2 * HOUR  # the bus is back at the depot and uploads
    first = await _upload(world, bus, taps)

    results = [(r["tap_id"], r["result"]) for r in first["results"]]
    assert results == [
        ("t-001", "accepted"),
        ("t-002", "accepted"),  # Bob's card was suspended only after this tap
        ("t-002", "accepted"),
        ("t-003", "accepted"),
        ("t-004", "code_already_used"),
        ("t-005", "code_expired"),
        ("t-006", "card_suspended"),
    ]
    assert first["results"][1] == first["results"][2]
    assert all(r["verification_id"] for r in first["results"] if r["result"] == "accepted")
    assert all(r.get("verification_id") is None for r in first["results"] if r["result"] != "accepted")
    assert await _risk(world) == [
        ("offline_double_tap", alice.ids["card_id"]),
        ("offline_tap_blocked_card", bob.ids["card_id"]),
    ]

    # the depot's link dropped before the answer arrived: the bus sends the same upload again
    again = await _upload(world, bus, taps)
    assert again == first
    assert len(await _risk(world)) == 2

    # Alice's history shows the morning ride with the bus's place, at the time of the tap
    history = await world.signed(alice, "GET", f"/v1/cards/{alice.ids['card_id']}/verifications")
    [ride] = history.json()["items"]
    assert ride["verification_id"] == first["results"][0]["verification_id"]
    assert ride["item_code"] == "wl-029"
    assert ride["merchant_name"] == "武隆公交"
    assert ride["terminal_id"] == "bus-101"
    assert ride["place"]["name"] == "bus-101服务台"
    assert ride["verified_at"] == iso(alice_at + 5)


async def test_a_code_accepted_offline_is_used_up_online_too(world: World) -> None:
    transit = await world.merchant(["wl-029"], name="武隆公交")
    bus = await world.terminal(transit, "bus-102")
    counter = await world.merchant(["wl-029"], name="公交卡服务点")
    rider = await world.device()
    code = await world.code(rider)
    [tap] = (await _upload(world, bus, [_tap("t-1", code, world.clock.now())]))["results"]
    assert tap["result"] == "accepted"
    assert problem(await world.verify(counter, code, "wl-029")) == (409, "code_already_used")


async def test_a_forged_code_or_a_wrong_item_in_a_tap_is_refused_as_it_would_be_online(world: World) -> None:
    transit = await world.merchant(["wl-029"], name="武隆公交")
    bus = await world.terminal(transit, "bus-103")
    rider = await world.device()
    code = await world.code(rider)
    now = world.clock.now()
    forged = code[:-3] + ("A" if code[-3] != "A" else "B") + code[-2:]
    answer = await _upload(
        world,
        bus,
        [
            _tap("t-forged", forged, now),
            _tap("t-item", code, now, item_code="wl-030"),
            _tap("t-future", code, now + HOUR),
            _tap("t-ok", code, now),
        ],
    )
    by_id = {r["tap_id"]: r["result"] for r in answer["results"]}
    assert by_id["t-forged"] in ("bad_signature", "malformed_code")
    assert by_id["t-item"] == "merchant_not_entitled"
    assert by_id["t-future"] == "tap_in_future"
    assert by_id["t-ok"] == "accepted"


async def test_unsigned_forged_and_non_terminal_uploads_are_refused(world: World) -> None:
    transit = await world.merchant(["wl-029"], name="武隆公交")
    bus = await world.terminal(transit, "bus-104")
    rider = await world.device()
    body = {"taps": [_tap("t-1", await world.code(rider), world.clock.now())]}

    unsigned = await world.client.post("/v1/offline-taps", json=body)
    assert problem(unsigned) == (401, "signature_missing")

    # signed by the bus, then the body changed on the way
    raw = json.dumps(body).encode()
    headers = sign_request(
        "POST", "http://testserver.local/v1/offline-taps", raw, bus.key, bus.key_id, bus.alg, created=world.clock.now()
    )
    tampered = json.dumps({"taps": [{**body["taps"][0], "tap_id": "t-2"}]}).encode()
    forged = await world.client.post(
        "/v1/offline-taps", content=tampered, headers={"Content-Type": "application/json", **headers}
    )
    assert problem(forged) == (401, "signature_invalid")

    # a stranger's key under the bus's key id
    impostor = ed25519_actor()
    impostor.key_id = bus.key_id
    assert problem(await world.signed(impostor, "POST", "/v1/offline-taps", body)) == (401, "signature_invalid")

    # a merchant's own key is not a terminal: an offline tap has a terminal and its place
    assert problem(await world.signed(transit, "POST", "/v1/offline-taps", body)) == (403, "forbidden")
    # the device itself cannot upload taps of its own code
    assert problem(await world.signed(rider, "POST", "/v1/offline-taps", body)) == (403, "forbidden")

    # none of them took the code
    [tap] = (await _upload(world, bus, body["taps"]))["results"]
    assert tap["result"] == "accepted"


async def test_malformed_uploads_are_invalid_requests(world: World) -> None:
    transit = await world.merchant(["wl-029"], name="武隆公交")
    bus = await world.terminal(transit, "bus-105")
    code = "EC1:ABC"
    bodies: list[dict[str, list[dict[str, str]]]] = [
        {"taps": []},
        {"taps": [{"tap_id": "t", "code": code, "item_code": "wl-029", "tapped_at": "2026-12-01T08:00:00"}]},
        {"taps": [{"tap_id": "t/1", "code": code, "item_code": "wl-029", "tapped_at": "2026-12-01T08:00:00Z"}]},
        {"taps": [_tap(f"t-{i}", code, world.clock.now()) for i in range(101)]},
    ]
    for body in bodies:
        assert problem(await world.signed(bus, "POST", "/v1/offline-taps", body)) == (400, "invalid_request")
    [tap] = (await _upload(world, bus, [_tap("t-x", code, world.clock.now())]))["results"]
    assert tap["result"] == "malformed_code"


async def test_the_same_upload_sent_twice_at_once_is_judged_once(world: World) -> None:
    transit = await world.merchant(["wl-029"], name="武隆公交")
    bus = await world.terminal(transit, "bus-106")
    riders = [await world.device() for _ in range(3)]
    now = world.clock.now()
    taps = [_tap(f"t-{i}", await world.code(rider), now) for i, rider in enumerate(riders)]

    first, second = await asyncio.gather(_upload(world, bus, taps), _upload(world, bus, taps))

    assert first == second
    assert [r["result"] for r in first["results"]] == ["accepted"] * 3
    assert await world.app.state.pool.fetchval("SELECT count(*) FROM verifications") == 3
    assert await _risk(world) == []
