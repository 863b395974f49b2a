"""Monthly partitions: the tables are partitioned, months are made ahead, rows land in their month, and
retention archives old months to files that give every row back."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import stat
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from ecard.partitions.service import add_months, month_of
from tests.support import Actor, World, ecard_cli

DAY = 86400.0


def _name(table: str, month: date) -> str:
    return f"{table}_{month:%Y_%m}"


async def _accepted(world: World, merchant: Actor, device: Actor) -> str:
    answer = await world.verify(merchant, await world.code(device), "wl-030")
    assert answer.status_code == 200, answer.text
    verification_id: str = answer.json()["verification_id"]
    return verification_id


async def _partition_of(world: World, verification_id: str) -> str:
    name: str = await world.app.state.pool.fetchval(
        "SELECT tableoid::regclass::text FROM verifications WHERE verification_id = $1", verification_id
    )
    return name


async def _history(world: World, device: Actor) -> list[str]:
    answer = await world.signed(device, "GET", f"/v1/cards/{device.ids['card_id']}/verifications")
    assert answer.status_code == 200, answer.text
    return [entry["verification_id"] for entry in answer.json()["items"]]


def _archive_facts(path: Path) -> tuple[int, str, dict[str, Any], bytes]:
    """(file mode, SHA-256, manifest beside it, the CSV inside) of an archive."""
    manifest = json.loads(path.with_name(path.name.removesuffix(".csv.gz") + ".json").read_text())
    return (
        stat.S_IMODE(path.stat().st_mode),
        hashlib.sha256(path.read_bytes()).hexdigest(),
        manifest,
        gzip.decompress(path.read_bytes()),
    )


def _files(folder: Path) -> list[Path]:
    return list(folder.iterdir())


async def _rows(world: World, where: str = "true", *args: Any) -> list[dict[str, Any]]:
    rows = await world.app.state.pool.fetch(
        f"SELECT * FROM verifications WHERE {where} ORDER BY verification_id",
        *args,
    )
    return [dict(r) for r in rows]


async def test_verifications_and_the_audit_log_are_partitioned_by_month(world: World) -> None:
    rows = await world.app.state.pool.fetch(
        "SELECT c.relname AS table, p.partstrat::text, a.attname AS key FROM pg_partitioned_table p"
        " JOIN pg_class c ON c.oid = p.partrelid"
        " JOIN pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0]"
        " ORDER BY 1"
    )
    assert {r["table"]: (r["partstrat"], r["key"]) for r in rows}.items() >= {
        "audit_log": ("r", "at"),
        "verifications": ("r", "verified_at"),
    }.items()


async def test_this_month_and_three_ahead_exist_with_a_default_behind_them(world: World) -> None:
    this = month_of(world.clock.now())
    partitions = await world.app.state.partitions.partitions()
    for table in ("verifications", "audit_log"):
        months = {p.month for p in partitions if p.table == table and p.attached}
        assert {add_months(this, n) for n in range(4)} <= months
        assert None in months  # the default partition
    # made ahead already: making them again changes nothing
    assert await world.app.state.partitions.ensure() == []


async def test_a_verification_in_a_coming_month_lands_in_that_months_partition(world: World) -> None:
    merchant = await world.merchant(["wl-030"])
    device = await world.device("张小三")
    world.clock.advance(62 * DAY)

    verification_id = await _accepted(world, merchant, device)

    assert await _partition_of(world, verification_id) == _name("verifications", month_of(world.clock.now()))
    assert await _history(world, device) == [verification_id]


async def test_a_month_with_no_partition_yet_fills_the_default_until_its_partition_is_made(world: World) -> None:
    merchant = await world.merchant(["wl-030"])
    device = await world.device("张小三")
    world.clock.advance(300 * DAY)  # beyond the months made ahead
    month = month_of(world.clock.now())
    verification_id = await _accepted(world, merchant, device)
    assert await _partition_of(world, verification_id) == "verifications_default"
    before = await _rows(world)

    made = await world.app.state.partitions.ensure()

    assert _name("verifications", month) in made
    assert await _partition_of(world, verification_id) == _name("verifications", month)
    assert await _rows(world) == before
    assert await _history(world, device) == [verification_id]
    # the code stays used once its record moved
    again = await world.verify(merchant, await world.code(device), "wl-030")
    assert again.status_code == 200
    assert await world.audit_intact()


async def test_retention_archives_old_months_to_files_that_give_every_row_back(world: World, tmp_path: Path) -> None:
    merchant = await world.merchant(["wl-030"])
    device = await world.device("张小三")
    world.clock.advance(-450 * DAY)  # about 15 months ago: a month with no partition, so in the default
    old_month = month_of(world.clock.now())
    old = [await _accepted(world, merchant, device), await _accepted(world, merchant, device)]
    world.clock.advance(450 * DAY)
    recent = await _accepted(world, merchant, device)
    old_rows = await _rows(world, "verification_id = ANY($1)", old)
    archive = tmp_path / "archive"

    archived = await world.app.state.partitions.retain("cli:ops", "verifications", 13, archive)

    assert [(a.name, a.month, a.rows) for a in archived] == [(_name("verifications", old_month), old_month, 2)]
    assert await _rows(world, "verification_id = ANY($1)", old) == []
    assert await _history(world, device) == [recent]
    names = {p.name for p in await world.app.state.partitions.partitions()}
    assert _name("verifications", old_month) not in names
    assert _name("verifications", month_of(world.clock.now())) in names

    path = Path(archived[0].path)
    assert path == archive / f"{_name('verifications', old_month)}.csv.gz"
    mode, digest, manifest, csv = _archive_facts(path)
    assert mode == 0o600
    assert digest == archived[0].sha256
    assert manifest["rows"] == 2
    assert manifest["sha256"] == archived[0].sha256

    # the archive restores with COPY, row for row
    async with world.app.state.pool.acquire() as conn:
        await conn.execute("CREATE TEMP TABLE restored (LIKE verifications)")
        await conn.copy_to_table("restored", source=io.BytesIO(csv), format="csv", header=True)
        restored = [dict(r) for r in await conn.fetch("SELECT * FROM restored ORDER BY verification_id")]
    assert restored == old_rows
    entry = await world.app.state.pool.fetchrow(
        "SELECT actor, subject, detail FROM audit_log WHERE action = 'partition.archived'"
    )
    assert (entry["actor"], entry["subject"]) == ("cli:ops", _name("verifications", old_month))
    assert entry["detail"]["rows"] == 2
    assert entry["detail"]["sha256"] == archived[0].sha256
    assert await world.audit_intact()


async def test_a_retention_cut_short_after_the_detach_is_finished_by_the_next_run(world: World, tmp_path: Path) -> None:
    merchant = await world.merchant(["wl-030"])
    device = await world.device("张小三")
    world.clock.advance(-420 * DAY)
    old_month = month_of(world.clock.now())
    old = await _accepted(world, merchant, device)
    world.clock.advance(420 * DAY)
    pool = world.app.state.pool
    name = _name("verifications", old_month)
    assert await pool.fetchval("SELECT ecard_month_partition('verifications', 'verified_at', $1)", old_month) == name
    await pool.execute(f'ALTER TABLE verifications DETACH PARTITION "{name}"')
    assert await _rows(world, "verification_id = $1", old) == []
    left = [p for p in await world.app.state.partitions.partitions() if p.name == name]
    assert [p.attached for p in left] == [False]

    archived = await world.app.state.partitions.retain("cli:ops", "verifications", 13, tmp_path)

    assert [(a.name, a.rows) for a in archived] == [(name, 1)]
    assert await pool.fetchval("SELECT to_regclass($1)", name) is None


async def test_retention_keeps_the_audit_log_and_at_least_this_month(world: World, tmp_path: Path) -> None:
    keeper = world.app.state.partitions
    with pytest.raises(ValueError, match="not archived"):
        await keeper.retain("cli:ops", "audit_log", 13, tmp_path)
    with pytest.raises(ValueError, match="1 or more"):
        await keeper.retain("cli:ops", "verifications", 0, tmp_path)

    refused = await ecard_cli(world, "partitions", "retain", "--older-than", "0", "--archive-dir", str(tmp_path))
    assert refused.returncode == 2
    assert json.loads(refused.stderr)["error"] == "invalid_request"
    audit = await ecard_cli(world, "partitions", "retain", "--older-than", "13", "--table", "audit_log")
    assert audit.returncode == 2
    assert _files(tmp_path) == []


async def test_ecard_partitions_ensure_and_list_from_the_command_line(world: World) -> None:
    ensured = await ecard_cli(world, "partitions", "ensure")
    assert ensured.returncode == 0, ensured.stderr
    assert json.loads(ensured.stdout) == {"made": []}  # the service made them when it started

    listed = await ecard_cli(world, "partitions", "list")

    assert listed.returncode == 0, listed.stderr
    names = {p["name"] for p in json.loads(listed.stdout)["partitions"]}
    this = month_of(world.clock.now())
    assert {_name("verifications", this), "verifications_default", _name("audit_log", this)} <= names
