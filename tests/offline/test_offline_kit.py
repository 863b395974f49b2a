"""docs/offline_check.py, the vendors' example, checks a live code with a cached key set and refuses what it must."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from ecard.kit.clock import iso
from tests.support import World

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "offline_check.py"


async def _example(keys: Path, code: str) -> tuple[int, dict[str, Any]]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(EXAMPLE), str(keys), code, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, json.loads(out)


async def test_the_example_accepts_a_live_code_offline_and_the_upload_settles_it(world: World, tmp_path: Path) -> None:
    transit = await world.merchant(["wl-029"], name="武隆公交")
    bus = await world.terminal(transit, "bus-201")
    rider = await world.device()
    keys = tmp_path / "keys.json"
    keys.write_bytes((await world.client.get("/v1/issuer/keys")).content)
    world.clock.offset = -30  # the ride was half a minute ago (status changes are stamped by the database's clock)
    code = await world.code(rider)

    status, verdict = await _example(keys, code)
    assert (status, verdict["result"]) == (0, "accepted_offline")
    assert len(bytes.fromhex(verdict["cti"])) >= 12

    tampered = code[:-3] + ("A" if code[-3] != "A" else "B") + code[-2:]
    status, verdict = await _example(keys, tampered)
    assert status == 1
    assert verdict["result"] in ("bad_signature", "malformed_code")
    assert (await _example(keys, "EC1:not-a-code"))[1]["result"] == "malformed_code"

    # what the example cannot know: the code is tapped twice, and then once more after the card was reported lost
    now = world.clock.now()
    first = {"tap_id": "t-1", "code": code, "item_code": "wl-029", "tapped_at": iso(now)}
    twice = {**first, "tap_id": "t-2", "tapped_at": iso(now + 1)}
    world.clock.offset = 0
    assert (await world.signed(rider, "POST", f"/v1/cards/{rider.ids['card_id']}/report-lost")).status_code == 200
    assert (await _example(keys, code))[1]["result"] == "accepted_offline"
    world.clock.advance(5)
    after = {**first, "tap_id": "t-3", "tapped_at": iso(world.clock.now())}
    answer = await world.signed(bus, "POST", "/v1/offline-taps", {"taps": [first, twice, after]})
    assert answer.status_code == 200, answer.text
    assert [r["result"] for r in answer.json()["results"]] == ["accepted", "code_already_used", "card_suspended"]


async def test_the_example_refuses_with_a_stale_key_set_or_a_key_it_does_not_have(world: World, tmp_path: Path) -> None:
    rider = await world.device()
    keys = tmp_path / "keys.json"
    keys.write_bytes((await world.client.get("/v1/issuer/keys")).content)
    code = await world.code(rider)

    day_and_more = time.time() - 86400 - 60
    os.utime(keys, (day_and_more, day_and_more))
    assert (await _example(keys, code))[1]["result"] == "key_set_stale"

    keys.touch()  # refreshed, and told (304) that the copy is current
    await world.app.state.key_ring.rotate("test")
    newer = await world.code(rider)
    assert (await _example(keys, newer))[1]["result"] == "unknown_key"
    keys.write_bytes((await world.client.get("/v1/issuer/keys")).content)
    assert (await _example(keys, newer))[1]["result"] == "accepted_offline"
