"""What docs/audit.md says the chain does not show, shown on a real database, and how an anchor closes it."""

from __future__ import annotations

import asyncpg
import pytest

from ecard.kit import audit
from ecard.kit.audit import AuditSealer, verify_chain
from tests.support import World


@pytest.fixture
def pool(world: World) -> asyncpg.Pool:
    return world.app.state.pool  # type: ignore[no-any-return]


@pytest.fixture
def key(world: World) -> bytes:
    return world.app.state.secret_keys.audit_key  # type: ignore[no-any-return]


async def _write(pool: asyncpg.Pool, n: int) -> None:
    for i in range(n):
        async with pool.acquire() as conn, conn.transaction():
            await audit.record(conn, "op_tester", "test.entry", f"subject-{i}", {"n": i})


async def _seal_all(world: World) -> None:
    await world.app.state.background.stop()  # the test seals, not the service's own sealer
    sealer: AuditSealer = world.app.state.audit_sealer
    while await sealer.seal(wait=True):
        pass


async def test_a_holder_of_the_key_rewrites_and_reseals_unseen_except_against_an_anchor(
    world: World, pool: asyncpg.Pool, key: bytes
) -> None:
    await _write(pool, 4)
    await _seal_all(world)
    anchor = (await verify_chain(pool, key)).head
    assert anchor is not None

    # with the database and the master key: drop the seals from the second on, change the entry, seal again
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("ALTER TABLE audit_seals DISABLE TRIGGER audit_seals_append_only")
        await conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
        await conn.execute("DELETE FROM audit_seals WHERE seq >= 2")
        await conn.execute("UPDATE audit_log SET actor = 'op_innocent' WHERE subject = 'subject-1'")
        await conn.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only")
        await conn.execute("ALTER TABLE audit_seals ENABLE TRIGGER audit_seals_append_only")
    await _seal_all(world)

    rewritten = await verify_chain(pool, key)
    assert rewritten.intact
    assert rewritten.head is not None
    assert rewritten.head.seq == anchor.seq
    check = await verify_chain(pool, key, anchor)
    assert not check.intact
    assert "rewritten" in check.why


async def test_truncating_both_tables_leaves_an_empty_chain_that_only_an_anchor_misses(
    world: World, pool: asyncpg.Pool, key: bytes
) -> None:
    await _write(pool, 3)
    await _seal_all(world)
    anchor = (await verify_chain(pool, key)).head
    assert anchor is not None

    # TRUNCATE fires no row trigger: append-only triggers stop UPDATE and DELETE, not the table's owner
    await pool.execute("TRUNCATE audit_log, audit_seals")

    emptied = await verify_chain(pool, key)
    assert (emptied.intact, emptied.sealed, emptied.head) == (True, 0, None)
    check = await verify_chain(pool, key, anchor)
    assert not check.intact
    assert "removed" in check.why
