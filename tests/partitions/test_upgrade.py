"""Upgrading a database that holds verifications and a sealed audit chain: every row lands in its month, the
chain still verifies, and the audit log's ids go on from where they were."""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from ecard.catalog.seed import catalog_rows
from ecard.catalog.store import seed as seed_catalog
from ecard.kit import audit
from ecard.kit.audit import AuditSealer, verify_chain
from ecard.kit.crypto import Keys
from ecard.kit.infra import MIGRATIONS_DIR, create_pool, migrate, recreate_database

PARTITIONING = "0017_partitions.sql"


def _earlier_migrations(folder: Path) -> Path:
    folder.mkdir()
    for script in sorted(MIGRATIONS_DIR.glob("[0-9][0-9][0-9][0-9]_*.sql")):
        if script.name < PARTITIONING:
            shutil.copy(script, folder)
    return folder


async def _verifications(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        "SELECT tableoid::regclass::text AS part, verification_id, card_id, cti, verified_at"
        " FROM verifications ORDER BY verification_id"
    )
    return [dict(r) for r in rows]


async def test_upgrading_moves_rows_into_their_months_and_keeps_the_audit_chain(
    service_urls: tuple[str, str], tmp_path: Path
) -> None:
    url = await recreate_database(service_urls[0], "_upgrade")
    await migrate(url, _earlier_migrations(tmp_path / "earlier"))
    key = Keys.from_master(os.urandom(32)).audit_key
    pool = await create_pool(url, 1, 2)
    try:
        async with pool.acquire() as conn, conn.transaction():
            await seed_catalog(conn, catalog_rows())
            await conn.execute(
                "INSERT INTO cardholders VALUES ('hld_1', '\\x00', '\\x00', '\\x01');"
                " INSERT INTO cards (card_id, cardholder_id, card_serial, region) VALUES ('crd_1', 'hld_1', 'S1', 'cq')"
            )
            await conn.executemany(
                "INSERT INTO verifications (verification_id, card_id, merchant_id, item_code, disclosed, cti,"
                " verified_at) VALUES ($1, 'crd_1', 'mch_1', 'wl-030', '{pseudonym}', $2, $3)",
                [
                    ("vrf_old", b"\x01" * 16, datetime(2025, 3, 4, tzinfo=UTC)),
                    ("vrf_now", b"\x02" * 16, datetime.now(UTC)),
                ],
            )
            for n in range(3):
                await audit.record(conn, "op_1", "card.registered", f"crd_{n}", {"n": n})
        assert await AuditSealer(pool, key).seal(wait=True) == 3
        before = await _verifications(pool)

        await migrate(url)

        after = await _verifications(pool)
        this_month = f"verifications_{datetime.now(UTC):%Y_%m}"
        assert [r["part"] for r in after] == [this_month, "verifications_2025_03"]
        assert [{k: v for k, v in r.items() if k != "part"} for r in after] == [
            {k: v for k, v in r.items() if k != "part"} for r in before
        ]
        check = await verify_chain(pool, key)
        assert (check.intact, check.sealed) == (True, 3)
        async with pool.acquire() as conn, conn.transaction():
            await audit.record(conn, "op_1", "card.registered", "crd_3", {"n": 3})
        assert await pool.fetchval("SELECT max(entry_id) FROM audit_log") == 4
        assert await AuditSealer(pool, key).seal(wait=True) == 1
        check = await verify_chain(pool, key)
        assert (check.intact, check.sealed) == (True, 4)
    finally:
        await pool.close()
