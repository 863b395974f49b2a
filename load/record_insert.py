"""The verification record's statement, before and after the partitioning migration, in one run.

    python load/record_insert.py --rows 20000 --rounds 3

Two fresh databases beside ECARD_DATABASE_URL (`<db>_ecard_insert_before` and `_after`, plus
ECARD_LOAD_DB_SUFFIX): one migrated up to the migration before 0017_partitions.sql, one fully. Each gets the
same cards; then `--tasks` concurrent connections run the hot path's statement (ecard/verify/store.py
`record`: read the card, insert the verification) `--rows` times in all, alternating the two databases
round by round. Prints rows/s per round and the after/before ratio of the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ecard.catalog.seed import catalog_rows
from ecard.catalog.store import seed as seed_catalog
from ecard.kit.ids import new_id
from ecard.kit.infra import MIGRATIONS_DIR, create_pool, migrate, recreate_database
from ecard.verify.store import record

PARTITIONING = "0017_partitions.sql"
CARDS = 1000


async def _prepared(base: str, name: str, upto: str | None) -> asyncpg.Pool:
    url = await recreate_database(base, f"_ecard_insert_{name}" + os.environ.get("ECARD_LOAD_DB_SUFFIX", ""))
    with tempfile.TemporaryDirectory() as folder:
        for script in sorted(MIGRATIONS_DIR.glob("[0-9][0-9][0-9][0-9]_*.sql")):
            if upto is None or script.name < upto:
                shutil.copy(script, folder)
        await migrate(url, Path(folder))
    pool = await create_pool(url, 8, 8)
    async with pool.acquire() as conn, conn.transaction():
        await seed_catalog(conn, catalog_rows())
        await conn.executemany(
            "INSERT INTO cardholders VALUES ($1, '\\x00', '\\x00', $2)",
            [(f"hld_{i}", i.to_bytes(4, "big")) for i in range(CARDS)],
        )
        await conn.executemany(
            "INSERT INTO cards (card_id, cardholder_id, card_serial, region) VALUES ($1, $2, $3, 'cq')",
            [(f"crd_{i}", f"hld_{i}", f"S{i}") for i in range(CARDS)],
        )
    return pool


async def _round(pool: asyncpg.Pool, rows: int, tasks: int) -> float:
    async def one_task(n: int, offset: int) -> None:
        for i in range(n):
            card = f"crd_{(offset + i) % CARDS}"
            at = datetime.now(UTC)
            await record(
                pool,
                card,
                new_id("vrf"),
                "mch_1",
                "wl-030",
                "T1",
                None,
                ["pseudonym"],
                os.urandom(16),
                at,
                entitled=True,
            )

    began = time.perf_counter()
    await asyncio.gather(*(one_task(rows // tasks, t * 7919) for t in range(tasks)))
    return rows / (time.perf_counter() - began)


async def main(rows: int, rounds: int, tasks: int) -> dict[str, object]:
    base = os.environ["ECARD_DATABASE_URL"]
    pools = {"before": await _prepared(base, "before", PARTITIONING), "after": await _prepared(base, "after", None)}
    rates: dict[str, list[float]] = {name: [] for name in pools}
    try:
        for _ in range(rounds):
            for name, pool in pools.items():
                rates[name].append(round(await _round(pool, rows, tasks)))
    finally:
        for pool in pools.values():
            await pool.close()
    medians = {name: statistics.median(values) for name, values in rates.items()}
    return {"rows_per_s": rates, "after_over_before": round(medians["after"] / medians["before"], 3)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000, help="statements per round and database")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, alternating the databases")
    parser.add_argument("--tasks", type=int, default=8, help="concurrent connections")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.rows, args.rounds, args.tasks)), indent=2))
