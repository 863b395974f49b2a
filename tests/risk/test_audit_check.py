"""The in-service audit check: an audit row edited in the database raises a high-severity event, once."""

from __future__ import annotations

import asyncio

from tests.risk.parties import LIBRARY, events
from tests.support import World


async def test_an_intact_chain_raises_nothing(world: World) -> None:
    await world.merchant([LIBRARY])
    assert await world.audit_intact()

    assert await world.app.state.audit_watch.check()
    assert await events(world, kind="audit_chain_broken") == []


async def test_an_edited_audit_row_raises_a_high_severity_event_once(world: World) -> None:
    await world.merchant([LIBRARY])
    await world.device()
    assert await world.audit_intact()
    pool = world.app.state.pool
    edited = await pool.fetchval("SELECT entry_id FROM audit_log ORDER BY entry_id LIMIT 1 OFFSET 1")
    # as someone with the database's owner rights would: past the append-only trigger
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
        await conn.execute("UPDATE audit_log SET actor = 'op_innocent' WHERE entry_id = $1", edited)
        await conn.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only")

    assert not await world.app.state.audit_watch.check()
    assert not await world.app.state.audit_watch.check()  # every worker checks; the desk hears of it once

    [event] = await events(world, kind="audit_chain_broken")
    assert event["severity"] == "high"
    assert event["detail"]["entry_id"] == edited
    assert (event["card_id"], event["merchant_id"], event["action"]) == (None, None, "none")
    assert "does not chain" in event["detail"]["why"]


async def test_the_check_runs_in_the_service_as_a_supervised_task(world: World) -> None:
    assert {"risk_rules", "audit_check"} <= set(world.app.state.background.names)


async def test_the_service_stops_while_the_rules_are_busy(world: World) -> None:
    library = await world.merchant([LIBRARY])
    holder = await world.device()
    for _ in range(3):
        assert (await world.verify(library, await world.code(holder), LIBRARY)).status_code == 200

    # no waiting for the rules: stopping must not hang on a step cut off in the middle
    await asyncio.wait_for(world.app.state.background.stop(), timeout=10)
