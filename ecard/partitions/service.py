"""Monthly partitions kept ahead of time, and retention: old months detached, archived, checked, then dropped.

The policy is docs/partitions.md. Months are UTC months. A row for a month that has no partition (far in the
future, or a clock gone wrong) lands in the table's default partition and is moved into its month's
partition when that is made."""

from __future__ import annotations

import asyncio
import csv
import gzip
import hashlib
import logging
import os
from datetime import UTC, date, datetime
from pathlib import Path

import asyncpg
import msgspec

from ecard.kit import audit
from ecard.kit.clock import Clock
from ecard.partitions import store
from ecard.partitions.models import Archived, Partition

log = logging.getLogger("ecard.partitions")

# the partitioned tables and the time each is partitioned by (ecard/migrations/0017_partitions.sql)
PARTITIONED = {"verifications": "verified_at", "audit_log": "at"}
# what retention may archive and drop. Not the audit log: its chain is checked from the first seal on, and
# an entry gone is a broken chain (ecard/kit/audit.py).
RETAINABLE = ("verifications",)
AHEAD_MONTHS = 3
CHECK_INTERVAL_S = 3600.0


def month_of(ts: float) -> date:
    at = datetime.fromtimestamp(ts, tz=UTC)
    return date(at.year, at.month, 1)


def add_months(month: date, n: int) -> date:
    index = month.year * 12 + month.month - 1 + n
    return date(index // 12, index % 12 + 1, 1)


def _count_records(path: Path) -> int:
    """The rows an archive holds, read back as COPY will read it (a quoted field may span lines)."""
    with gzip.open(path, "rt", encoding="utf-8", newline="") as text:
        return sum(1 for _ in csv.reader(text)) - 1  # the header


def _open_archive(path: Path) -> gzip.GzipFile:
    """A gzip file only its owner can read: a month of verifications says who used the card where."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
    return gzip.open(path, "wb")


def _seal_archive(part: Path, final: Path, done: Archived) -> Archived:
    """The checked archive under its final name, its digest, and the manifest beside it."""
    part.replace(final)
    done = msgspec.structs.replace(done, path=str(final), sha256=_sha256(final))
    manifest = final.with_name(f"{done.name}.json")
    manifest.write_bytes(msgspec.json.format(msgspec.json.encode(done)))
    manifest.chmod(0o600)
    return done


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as raw:
        for block in iter(lambda: raw.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Partitions:
    """Keeps `ahead_months` months of partitions ahead of the clock's month, and archives old ones on request."""

    def __init__(
        self, pool: asyncpg.Pool, clock: Clock, ahead_months: int = AHEAD_MONTHS, interval_s: float = CHECK_INTERVAL_S
    ) -> None:
        self._pool = pool
        self._clock = clock
        self._ahead = ahead_months
        self._interval = interval_s

    async def ensure(self) -> list[str]:
        """This month's partition and the next `ahead_months`' for every partitioned table; the names made now."""
        this = month_of(self._clock.now())
        made: list[str] = []
        async with self._pool.acquire() as conn, conn.transaction():
            await store.lock(conn)
            for table, key in PARTITIONED.items():
                for n in range(self._ahead + 1):
                    name = await store.create_month(conn, table, key, add_months(this, n))
                    if name is not None:
                        made.append(name)
        if made:
            log.info("partitions made ahead", extra={"partitions": made})
        return made

    async def run(self) -> None:
        """Make partitions ahead now and then every interval, until cancelled (supervised: ecard/kit/supervisor)."""
        while True:
            try:
                await self.ensure()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("making partitions ahead failed", extra={"error_type": type(exc).__name__})
            await asyncio.sleep(self._interval)

    async def partitions(self) -> list[Partition]:
        async with self._pool.acquire() as conn:
            return [p for table in PARTITIONED for p in await store.partitions(conn, table)]

    async def retain(self, actor: str, table: str, keep_months: int, archive_dir: Path) -> list[Archived]:
        """Archive and drop every month of `table` that ended `keep_months` or more months before this one began.

        Each month is detached first (from then on no row can reach it), written to
        `<archive_dir>/<partition>.csv.gz`, read back and counted against the table, and dropped (audited as
        `actor`) only when the counts agree; `<partition>.json` beside it says what it holds. Old rows in the
        default partition are moved into their months first. A run cut short leaves a detached month, which the
        next run archives."""
        if table not in RETAINABLE:
            raise ValueError(f"{table} is not archived by retention (docs/partitions.md)")
        if keep_months < 1:
            raise ValueError("at least this month is kept: --older-than is 1 or more months")
        cutoff = add_months(month_of(self._clock.now()), -keep_months)
        async with self._pool.acquire() as conn, conn.transaction():
            # rows of old months that only the default partition took go by the same policy: into a month first
            await store.lock(conn)
            for month in await store.stray_months(conn, table, PARTITIONED[table], cutoff):
                await store.create_month(conn, table, PARTITIONED[table], month)
            old = [p for p in await store.partitions(conn, table) if p.month is not None and p.month < cutoff]
        archived = []
        for partition in old:
            if partition.attached:
                async with self._pool.acquire() as conn, conn.transaction():
                    await store.lock(conn)
                    await store.detach(conn, table, partition.name)
            archived.append(await self._archive(actor, partition, archive_dir))
        return archived

    async def _archive(self, actor: str, partition: Partition, archive_dir: Path) -> Archived:
        assert partition.month is not None
        final = archive_dir / f"{partition.name}.csv.gz"
        part = final.with_name(final.name + ".part")
        async with self._pool.acquire() as conn:
            packed = await asyncio.to_thread(_open_archive, part)
            try:

                async def sink(chunk: bytes) -> None:
                    await asyncio.to_thread(packed.write, chunk)

                await store.copy_out(conn, partition.name, sink)
            finally:
                await asyncio.to_thread(packed.close)
            rows = await store.count(conn, partition.name)
            written = await asyncio.to_thread(_count_records, part)
            if written != rows:
                raise RuntimeError(f"{partition.name}: the archive holds {written} rows, the table {rows}; kept")
            done = Archived(partition.table, partition.name, partition.month, rows, "", "")
            done = await asyncio.to_thread(_seal_archive, part, final, done)
            async with conn.transaction():
                # what was dropped and where it went: counts and a digest, never a row
                detail = {"month": done.month.isoformat(), "rows": rows, "sha256": done.sha256, "file": final.name}
                await audit.record(conn, actor, "partition.archived", partition.name, detail)
                await store.drop(conn, partition.name)
        log.info("partition archived and dropped", extra={"partition": partition.name, "rows": rows})
        return done
