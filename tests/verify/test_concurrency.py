"""Verifications racing each other: one code is accepted once however many terminals try it at the same moment."""

from __future__ import annotations

import asyncio
from collections import Counter

from tests.support import World, problem


async def test_fifty_simultaneous_verifications_of_one_code_accept_exactly_one(world: World) -> None:
    terminals = [await world.merchant(["wl-030"], name=f"武隆区图书馆{i}") for i in range(5)]
    device = await world.device()
    code = await world.code(device)

    answers = await asyncio.gather(*(world.verify(terminals[i % 5], code, "wl-030") for i in range(50)))

    accepted = [a for a in answers if a.status_code == 200]
    refused = Counter(problem(a) for a in answers if a.status_code != 200)
    assert len(accepted) == 1, [a.text for a in answers if a.status_code not in (200, 409)]
    assert refused == {(409, "code_already_used"): 49}
    pool = world.app.state.pool
    rows = await pool.fetch("SELECT verification_id, card_id FROM verifications")
    assert [dict(r) for r in rows] == [
        {"verification_id": accepted[0].json()["verification_id"], "card_id": device.ids["card_id"]}
    ]
    assert await pool.fetchval("SELECT count(*) FROM risk_events WHERE kind = 'code_replay'") == 49


async def test_twenty_different_codes_verified_at_once_are_all_accepted(world: World) -> None:
    library = await world.merchant(["wl-030"])
    channel = await world.channel()
    devices = [await world.device(f"张{chr(0x4E00 + i)}三", channel=channel) for i in range(20)]
    codes = [await world.code(device) for device in devices]

    answers = await asyncio.gather(*(world.verify(library, code, "wl-030") for code in codes))

    assert [a.status_code for a in answers] == [200] * 20, [a.text for a in answers if a.status_code != 200]
    assert len({a.json()["verification_id"] for a in answers}) == 20
    assert len({a.json()["card"]["pseudonym"] for a in answers}) == 20
    rows = await world.app.state.pool.fetch("SELECT card_id FROM verifications")
    assert sorted(r["card_id"] for r in rows) == sorted(d.ids["card_id"] for d in devices)
    assert await world.app.state.pool.fetchval("SELECT count(*) FROM risk_events") == 0
