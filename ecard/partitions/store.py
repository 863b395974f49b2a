"""SQL of the partition keeper. It reads and reshapes other rooms' tables (verifications, the audit log) as
tables only, never their rows' meaning: what a partition holds is COPY's business."""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine
from datetime import date
from typing import Any

from asyncpg.pool import PoolConnectionProxy

from ecard.kit.infra import Conn
from ecard.partitions.models import Partition

# One keeper at a time, on any host: making months ahead and archiving old ones never overlap.
_LOCK = 0x70617274
# where COPY hands the rows, a chunk at a time
Sink = Callable[[bytes], Coroutine[Any, Any, None]]
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_MONTH = re.compile(r"_(\d{4})_(\d{2})$")


def _ident(name: str) -> str:
    """A table name for DDL, which takes no parameters; only names this keeper made or read from the catalog."""
    if not _NAME.match(name):
        raise ValueError("not a table name of ours")
    return f'"{name}"'


async def lock(conn: Conn) -> None:
    await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK)


async def create_month(conn: Conn, table: str, key: str, month: date) -> str | None:
    """The month's partition, made unless it exists (rows of it in the default partition move in); its name
    when made now."""
    name: str | None = await conn.fetchval("SELECT ecard_month_partition($1, $2, $3)", table, key, month)
    return name


async def stray_months(conn: Conn, table: str, key: str, before: date) -> list[date]:
    """The months before `before` that have rows in the table's default partition (no partition of their own)."""
    rows = await conn.fetch(
        f"SELECT DISTINCT date_trunc('month', {_ident(key)} AT TIME ZONE 'UTC')::date AS month"  # noqa: S608
        f" FROM {_ident(table + '_default')} WHERE {_ident(key)} < ($1::date::timestamp AT TIME ZONE 'UTC')"
        " ORDER BY 1",
        before,
    )
    return [r["month"] for r in rows]


def _month_of(name: str) -> date | None:
    found = _MONTH.search(name)
    return date(int(found[1]), int(found[2]), 1) if found else None


async def partitions(conn: Conn, table: str) -> list[Partition]:
    """The table's partitions, and the months detached from it but not archived yet (a retention cut short)."""
    rows = await conn.fetch(
        "SELECT c.relname AS name, c.relispartition AS attached FROM pg_class c"
        " WHERE c.relkind = 'r' AND c.relnamespace = current_schema()::regnamespace"
        " AND (c.oid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = $1::regclass)"
        "      OR (NOT c.relispartition AND c.relname ~ ('^' || $1 || '_[0-9]{4}_[0-9]{2}$')))"
        " ORDER BY c.relname",
        table,
    )
    return [Partition(table, r["name"], _month_of(r["name"]), r["attached"]) for r in rows]


async def detach(conn: Conn, table: str, name: str) -> None:
    await conn.execute(f"ALTER TABLE {_ident(table)} DETACH PARTITION {_ident(name)}")


async def count(conn: Conn, name: str) -> int:
    rows: int = await conn.fetchval(f"SELECT count(*) FROM {_ident(name)}")  # noqa: S608 - a checked table name
    return rows


async def copy_out(
    conn: PoolConnectionProxy[Any], name: str, sink: Callable[[bytes], Coroutine[Any, Any, None]]
) -> None:
    """Every row of the table as CSV with a header: what `COPY ... FROM ... (FORMAT csv, HEADER)` reads back."""
    _ident(name)
    await conn.copy_from_table(name, output=sink, format="csv", header=True)


async def drop(conn: Conn, name: str) -> None:
    await conn.execute(f"DROP TABLE {_ident(name)}")
