"""M10: the audit log is written without a lock, sealed afterwards in a well-defined order with a keyed MAC
that covers each entry's time, and `ecard audit verify` names the first entry that does not chain."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from asyncpg.pool import PoolConnectionProxy
from asyncpg.transaction import Transaction

from ecard.kit import audit
from ecard.kit.audit import AuditSealer, ChainHead, verify_chain
from ecard.kit.crypto import Keys
from tests.support import World, ecard_cli


@pytest.fixture
def pool(world: World) -> asyncpg.Pool:
    return world.app.state.pool  # type: ignore[no-any-return]


@pytest.fixture
def key(world: World) -> bytes:
    return world.app.state.secret_keys.audit_key  # type: ignore[no-any-return]


async def write(pool: asyncpg.Pool, n: int, action: str = "test.entry") -> None:
    for i in range(n):
        async with pool.acquire() as conn, conn.transaction():
            await audit.record(conn, "op_tester", action, f"subject-{i}", {"n": i, "note": "备注"})


async def seal_all(world: World) -> None:
    while await world.app.state.audit_sealer.seal(wait=True):
        pass


async def sealed_order(pool: asyncpg.Pool) -> list[str]:
    rows = await pool.fetch(
        "SELECT a.subject FROM audit_seals s JOIN audit_log a USING (entry_id) WHERE a.action = 'test.entry'"
        " ORDER BY s.seq"
    )
    return [r["subject"] for r in rows]


@contextlib.asynccontextmanager
async def held_open(pool: asyncpg.Pool) -> AsyncIterator[tuple[PoolConnectionProxy[Any], Transaction]]:
    """A connection in a transaction that the test commits; rolled back at the end if it did not."""
    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        try:
            yield conn, tx
        finally:
            if conn.is_in_transaction():
                await tx.rollback()


async def test_audited_writes_do_not_wait_for_each_other(pool: asyncpg.Pool) -> None:
    async with held_open(pool) as (conn, _):
        await audit.record(conn, "op_a", "test.entry", "first", {})

        # a second writer's entry commits while the first transaction is still open (one lock for all made it wait)
        async with asyncio.timeout(10):
            await write(pool, 1)

    assert await pool.fetchval("SELECT count(*) FROM audit_log WHERE subject = 'subject-0'") == 1


async def test_an_entry_is_sealed_only_when_every_transaction_before_it_has_ended(
    world: World, pool: asyncpg.Pool, key: bytes
) -> None:
    async with held_open(pool) as (conn, tx):
        await audit.record(conn, "op_a", "test.entry", "early-but-slow", {})
        await write(pool, 1)  # commits now, after the slow one began

        await seal_all(world)

        # the committed entry waits for the open transaction before it: sealing it now would put it first for ever
        assert await sealed_order(pool) == []
        await tx.commit()
    await seal_all(world)
    assert await sealed_order(pool) == ["early-but-slow", "subject-0"]
    check = await verify_chain(pool, key)
    assert check.intact
    assert check.unsealed == 0


async def test_many_concurrent_writers_are_each_sealed_once_in_one_intact_chain(
    world: World, pool: asyncpg.Pool, key: bytes
) -> None:
    await asyncio.gather(*(write(pool, 5) for _ in range(8)))

    await seal_all(world)
    check = await verify_chain(pool, key)

    assert check.intact, check.why
    assert check.unsealed == 0
    assert check.sealed == await pool.fetchval("SELECT count(*) FROM audit_log")
    assert await pool.fetchval("SELECT count(DISTINCT entry_id) FROM audit_seals") == check.sealed
    assert check.head is not None
    assert check.head.seq == check.sealed


async def test_the_background_sealer_seals_what_services_write(world: World, pool: asyncpg.Pool, key: bytes) -> None:
    await write(pool, 3)

    async with asyncio.timeout(30):
        while (await verify_chain(pool, key)).unsealed:  # noqa: ASYNC110 - the sealer runs on its own schedule
            await asyncio.sleep(0.1)

    assert (await verify_chain(pool, key)).intact
    assert "audit_sealer" in world.app.state.background.names


async def tamper(pool: asyncpg.Pool, table: str, sql: str, *args: Any) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(f"ALTER TABLE {table} DISABLE TRIGGER {table}_append_only")
        done = await conn.execute(sql, *args)
        await conn.execute(f"ALTER TABLE {table} ENABLE TRIGGER {table}_append_only")
    assert done.endswith(" 1"), done


async def entry_id(pool: asyncpg.Pool, subject: str) -> int:
    found: int = await pool.fetchval("SELECT entry_id FROM audit_log WHERE subject = $1", subject)
    return found


@pytest.mark.parametrize(
    ("table", "sql", "why"),
    [
        ("audit_log", "UPDATE audit_log SET detail = '{\"n\": 99}' WHERE entry_id = $1", "does not chain"),
        ("audit_log", "UPDATE audit_log SET actor = 'op_innocent' WHERE entry_id = $1", "does not chain"),
        ("audit_log", "UPDATE audit_log SET at = at - interval '1 hour' WHERE entry_id = $1", "does not chain"),
        ("audit_log", "DELETE FROM audit_log WHERE entry_id = $1", "is gone"),
        ("audit_seals", "DELETE FROM audit_seals WHERE entry_id = $1", "seal 3 is missing"),
        ("audit_seals", "UPDATE audit_seals SET mac = sha256(mac) WHERE entry_id = $1", "does not chain"),
    ],
    ids=["rewritten-detail", "rewritten-actor", "backdated", "deleted-entry", "deleted-seal", "forged-seal"],
)
async def test_tampering_names_the_first_entry_that_does_not_chain(
    world: World, pool: asyncpg.Pool, key: bytes, table: str, sql: str, why: str
) -> None:
    await write(pool, 5)
    await seal_all(world)
    assert (await verify_chain(pool, key)).intact
    third = await entry_id(pool, "subject-2")

    await tamper(pool, table, sql, third)
    check = await verify_chain(pool, key)

    assert not check.intact
    assert check.broken_seq == 3
    assert why in check.why
    if "missing" not in why:
        assert check.broken_entry == third


async def test_an_entry_slipped_in_behind_the_sealer_is_found(world: World, pool: asyncpg.Pool, key: bytes) -> None:
    await write(pool, 3)
    await seal_all(world)

    # a row with an old transaction id sorts before seals already made: the sealer would never reach it
    slipped = await pool.fetchval(
        "INSERT INTO audit_log (actor, action, subject, detail, xid)"
        " VALUES ('op_x', 'test.entry', 'slipped', '{}', '3') RETURNING entry_id"
    )
    await seal_all(world)
    check = await verify_chain(pool, key)

    assert not check.intact
    assert check.broken_entry == slipped


async def test_a_seal_made_without_the_key_does_not_chain(world: World, pool: asyncpg.Pool, key: bytes) -> None:
    await world.app.state.background.stop()  # the service's own sealer must not get there first
    await write(pool, 2)
    await seal_all(world)
    # someone with the database but not the master key seals an entry of their own
    await write(pool, 1, action="test.forged")
    await AuditSealer(pool, Keys.from_master(os.urandom(32)).audit_key).seal(wait=True)

    check = await verify_chain(pool, key)

    assert not check.intact
    assert check.broken_seq == 3
    assert not (await verify_chain(pool, Keys.from_master(os.urandom(32)).audit_key)).intact


async def test_removing_the_newest_entries_shows_only_against_an_anchor(
    world: World, pool: asyncpg.Pool, key: bytes
) -> None:
    await write(pool, 4)
    await seal_all(world)
    anchor = (await verify_chain(pool, key)).head
    assert anchor is not None
    assert ChainHead.parse(anchor.text()) == anchor

    last = await entry_id(pool, "subject-3")
    await tamper(pool, "audit_seals", "DELETE FROM audit_seals WHERE entry_id = $1", last)
    await tamper(pool, "audit_log", "DELETE FROM audit_log WHERE entry_id = $1", last)

    # the chain alone cannot tell a shorter log from a tail cut off
    assert (await verify_chain(pool, key)).intact
    check = await verify_chain(pool, key, anchor)
    assert not check.intact
    assert "anchor" in check.why


async def test_ecard_audit_verify_exits_0_when_intact_and_1_naming_the_first_broken_entry(
    world: World, pool: asyncpg.Pool
) -> None:
    await write(pool, 3)
    await seal_all(world)

    intact = await ecard_cli(world, "audit", "verify")
    assert intact.returncode == 0, intact.stderr
    report = json.loads(intact.stdout)
    assert report["intact"] is True
    assert report["sealed"] == 3
    head = report["head"]
    assert head.startswith("3:")
    anchored = await ecard_cli(world, "audit", "verify", "--anchor", head)
    assert anchored.returncode == 0, anchored.stderr

    second = await entry_id(pool, "subject-1")
    await tamper(pool, "audit_log", "UPDATE audit_log SET subject = 'someone-else' WHERE entry_id = $1", second)
    broken = await ecard_cli(world, "audit", "verify")

    assert broken.returncode == 1
    report = json.loads(broken.stdout)
    assert report["intact"] is False
    assert report["broken_entry"] == second
    assert report["broken_seq"] == 2
    assert f"entry {second}" in report["why"]
    bad_anchor = await ecard_cli(world, "audit", "verify", "--anchor", "not-an-anchor")
    assert bad_anchor.returncode == 2
    assert json.loads(bad_anchor.stderr.strip().splitlines()[-1])["error"] == "invalid_request"
