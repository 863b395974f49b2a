"""Verifications arriving together are recorded together (group commit): every one still answered only with its
own record durable, and one code recorded before does not take the others of its group down with it."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime

from ecard.codes import decode
from tests.support import World, problem


async def test_a_crowd_of_codes_is_recorded_one_row_each(world: World) -> None:
    library = await world.merchant(["wl-030"])
    channel = await world.channel()
    devices = [await world.device(f"李{chr(0x4E00 + i)}", channel=channel) for i in range(30)]
    codes = [await world.code(device) for device in devices]

    answers = await asyncio.gather(*(world.verify(library, code, "wl-030") for code in codes))

    assert [a.status_code for a in answers] == [200] * 30, [a.text for a in answers if a.status_code != 200]
    rows = await world.app.state.pool.fetch("SELECT verification_id, card_id, disclosed FROM verifications")
    assert {r["verification_id"] for r in rows} == {a.json()["verification_id"] for a in answers}
    assert sorted(r["card_id"] for r in rows) == sorted(d.ids["card_id"] for d in devices)
    # what each row says was disclosed, in the item's order, is what the answer disclosed (besides the region)
    shown = tuple(k for k in answers[0].json()["card"] if k != "region")
    assert shown
    assert {tuple(r["disclosed"]) for r in rows} == {shown}


async def test_a_code_recorded_before_is_refused_alone_within_its_group(world: World) -> None:
    library = await world.merchant(["wl-030"])
    channel = await world.channel()
    devices = [await world.device(f"王{chr(0x4E00 + i)}", channel=channel) for i in range(10)]
    codes = [await world.code(device) for device in devices]
    # the first code's record committed by an attempt whose answer was lost (its claim given back since)
    pool = world.app.state.pool
    await pool.execute(
        "INSERT INTO verifications (verification_id, card_id, merchant_id, item_code, disclosed, cti, verified_at)"
        " VALUES ('vrf_earlier', $1, $2, 'wl-030', '{}', $3, $4)",
        devices[0].ids["card_id"],
        library.ids["merchant_id"],
        decode(codes[0]).cti,
        datetime.now(UTC),
    )

    answers = await asyncio.gather(*(world.verify(library, code, "wl-030") for code in codes))

    assert problem(answers[0]) == (409, "code_already_used")
    assert Counter(a.status_code for a in answers[1:]) == {200: 9}
    assert await pool.fetchval("SELECT count(*) FROM verifications") == 10
