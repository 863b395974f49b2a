"""Millions of cardholders, cards and devices, written with COPY, sealed and blind-indexed as the service does.

    python load/population.py --cards 1000000

Makes the database `<db>_ecard_population` (plus ECARD_LOAD_DB_SUFFIX) beside ECARD_DATABASE_URL anew,
migrates it, and writes N cardholders (name and ID number sealed with `Keys.seal_pii`, the ID number's
blind index with `Keys.blind_index`, each under the service's own context strings), one card each and one
device each (a device key in `client_keys` with a key id minted as `ClientDirectory.mint_key_id` mints
them). The master key is made up for the run and thrown away: nobody can open what was sealed, which is
as it should be for made-up people. Every constraint, index and foreign key of the schema stays on.

Prints, as JSON: seconds and rows/s per phase, and the database size in total and per million cards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import asyncpg
from cryptography.hazmat.primitives.asymmetric import ec

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ecard.cards.models import check_digit, normalise_id_number
from ecard.clients import ClientDirectory
from ecard.kit.crypto import Keys
from ecard.kit.ids import new_id
from ecard.kit.infra import migrate, recreate_database
from ecard.kit.jwk import public_jwk, thumbprint

CHANNEL = "chn_population"
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超霞平刚桂"
# distinct real P-256 public keys, shared out round-robin: a key pair per device would spend the run on keygen,
# and a public JWK is the same size whichever key it is
KEY_POOL = 1000
REGION_DAYS = 20000  # birth dates from 1950-01-01 on: 20 000 days x 1 000 sequence numbers = 20 M people


@dataclass(frozen=True)
class Phase:
    table: str
    rows: int
    seconds: float

    def as_dict(self) -> dict[str, object]:
        return {"table": self.table, "rows": self.rows, "seconds": round(self.seconds, 2)}


def id_number(i: int) -> str:
    """The i-th made-up resident ID number: valid check digit, unique for i below 20 M, nobody's."""
    day, seq = divmod(i, 1000)
    born = time.gmtime(-631152000 + day * 86400)  # 1950-01-01 + day
    body = f"500101{born.tm_year:04d}{born.tm_mon:02d}{born.tm_mday:02d}{seq:03d}"
    return body + check_digit(body)


def _name(i: int) -> str:
    return SURNAMES[i % len(SURNAMES)] + GIVEN[(i // 20) % len(GIVEN)] + GIVEN[(i // 500) % len(GIVEN)]


def key_pool() -> list[ec.EllipticCurvePrivateKey]:
    """The distinct P-256 key pairs the population's devices share, round-robin (device i has pool[i % KEY_POOL])."""
    return [ec.generate_private_key(ec.SECP256R1()) for _ in range(KEY_POOL)]


@dataclass
class Batch:
    holders: list[tuple[Any, ...]]
    cards: list[tuple[Any, ...]]
    keys: list[tuple[Any, ...]]
    devices: list[tuple[Any, ...]]


# each generating process's own keys and directory (a process pool's initializer sets them)
_WORKER: dict[str, Any] = {}


def _start_worker(master: bytes, jwks: list[dict[str, str]]) -> None:
    keys = Keys.from_master(master)
    _WORKER.update(
        keys=keys,
        # only for minting key ids as the service mints them: it makes no query
        directory=ClientDirectory(None, keys),  # type: ignore[arg-type]
        jwks=[json.dumps(jwk) for jwk in jwks],
        prints=[thumbprint(jwk) for jwk in jwks],
    )


def make_batch(start: int, stop: int) -> Batch:
    """Cards start to stop - 1: their holders sealed and indexed, their devices' keys minted, as the service does."""
    keys: Keys = _WORKER["keys"]
    directory: ClientDirectory = _WORKER["directory"]
    jwks, prints = _WORKER["jwks"], _WORKER["prints"]
    batch = Batch([], [], [], [])
    for i in range(start, stop):
        holder, card, device = new_id("hld"), new_id("crd"), new_id("dev")
        number = normalise_id_number(id_number(i))
        batch.holders.append(
            (
                holder,
                keys.seal_pii(_name(i), f"name:{holder}"),
                keys.seal_pii(number, f"id:{holder}"),
                keys.blind_index(number),
            )
        )
        batch.cards.append((card, holder, f"CQP{i:012d}", "cq"))
        key_id = directory.mint_key_id()
        pick = i % len(jwks)
        batch.keys.append((key_id, "device", device, card, jwks[pick], "ecdsa-p256-sha256", prints[pick], True))
        batch.devices.append((device, card, CHANNEL, key_id, "手机"))
    return batch


COLUMNS = {
    "cardholders": ["cardholder_id", "name_sealed", "id_sealed", "id_index"],
    "cards": ["card_id", "cardholder_id", "card_serial", "region"],
    "client_keys": ["key_id", "kind", "owner_id", "parent_id", "public_jwk", "alg", "thumbprint", "minted"],
    "devices": ["device_id", "card_id", "channel_id", "key_id", "name"],
}


async def populate(
    url: str,
    total: int,
    size: int,
    procs: int,
    master: bytes | None = None,
    pool: list[ec.EllipticCurvePrivateKey] | None = None,
) -> dict[str, object]:
    """Writes the population. Without `master` and `pool`, both are made up here and thrown away; a caller that
    serves the population (load/population_p99.py) passes its own, so that its devices can sign requests."""
    await migrate(url)
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "INSERT INTO channels (channel_id, name) VALUES ($1, 'population') ON CONFLICT DO NOTHING", CHANNEL
        )
        empty = await conn.fetchval("SELECT pg_database_size(current_database())")
        master = master or os.urandom(32)
        jwks = [public_jwk(key.public_key()) for key in pool or key_pool()]
        seconds = dict.fromkeys(COLUMNS, 0.0)
        began = time.perf_counter()
        written = 0
        loop = asyncio.get_running_loop()
        with ProcessPoolExecutor(procs, initializer=_start_worker, initargs=(master, jwks)) as makers:
            # up to two batches per maker under way while one is written
            starts = iter(range(0, total, size))
            pending = [
                loop.run_in_executor(makers, make_batch, s, min(s + size, total)) for s in islice(starts, 2 * procs)
            ]
            while pending:
                batch = await pending.pop(0)
                following = next(starts, None)
                if following is not None:
                    pending.append(loop.run_in_executor(makers, make_batch, following, min(following + size, total)))
                async with conn.transaction():
                    for table, rows in (
                        ("cardholders", batch.holders),
                        ("cards", batch.cards),
                        ("client_keys", batch.keys),
                        ("devices", batch.devices),
                    ):
                        t = time.perf_counter()
                        await conn.copy_records_to_table(table, records=rows, columns=COLUMNS[table])
                        seconds[table] += time.perf_counter() - t
                written += len(batch.holders)
                print(f"{time.perf_counter() - began:8.1f} s  {written} cards written", file=sys.stderr)
        elapsed = time.perf_counter() - began
        await conn.execute("ANALYZE")
        size_bytes = await conn.fetchval("SELECT pg_database_size(current_database())")
        tables = {
            r["name"]: r["bytes"]
            for r in await conn.fetch(
                "SELECT relname AS name, pg_total_relation_size(oid) AS bytes FROM pg_class"
                " WHERE relname = ANY($1::text[]) ORDER BY 1",
                list(COLUMNS),
            )
        }
    finally:
        await conn.close()
    grown = size_bytes - empty
    return {
        "cards": total,
        "seconds": round(elapsed, 1),
        "cards_per_s": round(total / elapsed),
        "rows_per_s": round(4 * total / elapsed),
        "generating_processes": procs,
        "copy_s": {table: round(s, 1) for table, s in seconds.items()},
        "database_bytes": size_bytes,
        "grown_bytes": grown,
        "mib_per_million_cards": round(grown / total * 1_000_000 / 2**20, 1),
        "table_bytes": tables,
    }


# Verifications as the hot path writes them, made in the database: `n` rows over this month so far, at terminals
# with a place (as most are), each disclosing a pseudonym. Their size is what matters here, not who they name.
_VERIFICATIONS = """
INSERT INTO verifications (verification_id, card_id, merchant_id, item_code, terminal_id, place, disclosed, cti,
                           verified_at)
SELECT 'vrf_' || substr(md5(g::text), 1, 26), 'crd_' || substr(md5((g % 1000003)::text), 1, 26),
       'mch_' || substr(md5((g % 2000)::text), 1, 26), 'wl-030', 'T' || (g % 5000),
       jsonb_build_object('name', '武隆区图书馆一楼服务台', 'address', '重庆市武隆区芙蓉路 1 号',
                          'region', 'wulong', 'lat', 29.32, 'lon', 107.76),
       ARRAY['pseudonym'], decode(md5('cti' || g), 'hex'),
       date_trunc('month', now()) + (g % GREATEST(1, extract(epoch FROM now() - date_trunc('month', now()))::int))
           * interval '1 second'
FROM generate_series($1::bigint, $2::bigint) AS g
"""


# a partitioned table has no storage of its own: its size is its partitions'
_PARTITIONS_SIZE = (
    "SELECT sum(pg_total_relation_size(inhrelid))::bigint FROM pg_inherits WHERE inhparent = 'verifications'::regclass"
)


async def verifications(url: str, total: int, size: int) -> dict[str, object]:
    """`total` verifications, `size` per statement; their seconds and the table's size per million."""
    conn = await asyncpg.connect(url)
    try:
        before = await conn.fetchval(_PARTITIONS_SIZE)
        began = time.perf_counter()
        for first in range(0, total, size):
            async with conn.transaction():
                await conn.execute(_VERIFICATIONS, first, min(first + size, total) - 1)
        elapsed = time.perf_counter() - began
        await conn.execute("ANALYZE verifications")
        grown = await conn.fetchval(_PARTITIONS_SIZE) - before
    finally:
        await conn.close()
    return {
        "verifications": total,
        "seconds": round(elapsed, 1),
        "rows_per_s": round(total / elapsed),
        "grown_bytes": grown,
        "mib_per_million_verifications": round(grown / total * 1_000_000 / 2**20, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--cards", type=int, default=100_000, help="how many cardholders, cards and devices (at most 20 M)"
    )
    parser.add_argument("--batch", type=int, default=20_000, help="rows per COPY and transaction")
    parser.add_argument(
        "--verifications", type=int, default=0, help="verifications to write after the cards, for their size"
    )
    parser.add_argument("--procs", type=int, default=2, help="processes sealing and indexing while one writes")
    args = parser.parse_args()
    if not 0 < args.cards <= 1000 * REGION_DAYS:
        parser.error("--cards is 1 to 20 000 000")
    base = os.environ.get("ECARD_DATABASE_URL")
    if not base:
        parser.error("ECARD_DATABASE_URL must name a PostgreSQL server")
    url = asyncio.run(recreate_database(base, "_ecard_population" + os.environ.get("ECARD_LOAD_DB_SUFFIX", "")))
    report = asyncio.run(populate(url, args.cards, args.batch, args.procs))
    if args.verifications:
        report["verifications"] = asyncio.run(verifications(url, args.verifications, args.batch * 5))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
