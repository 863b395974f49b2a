"""The ledger: immutable entries, balanced transfers enforced by the database, and `ecard ledger check`."""

from __future__ import annotations

import json

import asyncpg
import pytest

from tests.payments.conftest import Shop
from tests.support import World, ecard_cli


async def _paid(world: World, shop: Shop) -> str:
    merchant = await shop.merchant()
    device = await shop.payer(10_000)
    bill = await shop.bill(merchant, 2_000)
    assert (await shop.pay(device, bill["bill_id"])).status_code == 200
    bill_id: str = bill["bill_id"]
    return bill_id


async def test_entries_cannot_be_changed_or_deleted(world: World, shop: Shop) -> None:
    await _paid(world, shop)
    pool: asyncpg.Pool = world.app.state.pool
    with pytest.raises(asyncpg.PostgresError, match="immutable"):
        await pool.execute("UPDATE ledger_entries SET amount_fen = amount_fen + 1")
    with pytest.raises(asyncpg.PostgresError, match="immutable"):
        await pool.execute("DELETE FROM ledger_entries")
    with pytest.raises(asyncpg.PostgresError, match="immutable"):
        await pool.execute("UPDATE ledger_transfers SET amount_fen = 1")


async def test_an_unbalanced_transfer_cannot_commit(world: World, shop: Shop) -> None:
    bill_id = await _paid(world, shop)
    pool: asyncpg.Pool = world.app.state.pool
    merchant_id = await pool.fetchval("SELECT merchant_id FROM bills WHERE bill_id = $1", bill_id)

    async def unbalanced() -> None:
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO ledger_transfers (transfer_id, kind, bill_id, merchant_id, amount_fen, booked_at)"
                " VALUES ('ltr_x', 'settle', $1, $2, 5, now())",
                bill_id,
                merchant_id,
            )
            await conn.execute(
                "INSERT INTO ledger_entries (transfer_id, account, amount_fen)"
                " VALUES ('ltr_x', 'clearing', -5), ('ltr_x', $1, 4)",
                f"merchant:{merchant_id}",
            )

    with pytest.raises(asyncpg.PostgresError, match="unbalanced"):
        await unbalanced()
    assert await pool.fetchval("SELECT count(*) FROM ledger_transfers WHERE transfer_id = 'ltr_x'") == 0


async def test_ledger_check_names_a_bill_whose_state_disagrees_with_its_entries(world: World, shop: Shop) -> None:
    bill_id = await _paid(world, shop)
    clean = await ecard_cli(world, "ledger", "check")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert json.loads(clean.stdout) == {"clean": True, "problems": []}
    # someone sets the paid bill back to pending behind the service's back
    await world.app.state.pool.execute(
        "UPDATE bills SET status = 'pending', paid_at = NULL, card_id = NULL WHERE bill_id = $1", bill_id
    )
    dirty = await ecard_cli(world, "ledger", "check")
    assert dirty.returncode == 1
    found = json.loads(dirty.stdout)
    assert found["clean"] is False
    assert any(bill_id in line for line in found["problems"])
