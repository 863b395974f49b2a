"""Reads that tolerate lag (the holder's history) go to a streaming replica: a real one, on loopback."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from ecard.app import create_app
from ecard.config import Settings
from ecard.kit.clock import MovableClock
from ecard.kit.crypto import b64u
from ecard.kit.infra import migrate
from tests.conftest import reset_database, running
from tests.replica import Pair, streaming_pair
from tests.support import Actor, World


@pytest.fixture
async def pair() -> AsyncIterator[Pair]:
    with streaming_pair() as made:
        await migrate(made.primary_url)
        await reset_database(made.primary_url)
        yield made


@pytest.fixture
async def replicated(pair: Pair, service_urls: tuple[str, str], tmp_path: Path) -> AsyncIterator[World]:
    settings = Settings(
        database_url=pair.primary_url,
        database_replica_url=pair.replica_url,
        redis_url=service_urls[1],
        data_dir=tmp_path / "data",
        redis_prefix=f"ecardtest:{uuid.uuid4().hex[:12]}:",
        secret_key=b64u(os.urandom(32)),
        db_pool_min=1,
        db_pool_max=4,
    )
    clock = MovableClock()
    app = create_app(settings, clock=clock)
    async with (
        running(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver.local") as client,  # type: ignore[arg-type]
    ):
        yield World(app, client, clock)


async def _caught_up(pair: Pair) -> None:
    """Until the replica has replayed everything the primary has written so far."""
    primary, replica = await asyncpg.connect(pair.primary_url), await asyncpg.connect(pair.replica_url)
    try:
        lsn = await primary.fetchval("SELECT pg_current_wal_lsn()")
        for _ in range(1500):
            if await replica.fetchval("SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn", lsn):
                return
            await asyncio.sleep(0.02)
        pytest.fail("the replica did not catch up within 30 s")
    finally:
        await primary.close()
        await replica.close()


async def _replay(pair: Pair, *, paused: bool) -> None:
    replica = await asyncpg.connect(pair.replica_url)
    try:
        await replica.execute("SELECT pg_wal_replay_pause()" if paused else "SELECT pg_wal_replay_resume()")
        for _ in range(1500):
            if (await replica.fetchval("SELECT pg_get_wal_replay_pause_state()") == "paused") == paused:
                return
            await asyncio.sleep(0.02)
        pytest.fail("the replica's replay did not pause or resume within 30 s")
    finally:
        await replica.close()


async def _history(world: World, device: Actor) -> list[str]:
    answer = await world.signed(device, "GET", f"/v1/cards/{device.ids['card_id']}/verifications")
    assert answer.status_code == 200, answer.text
    return [entry["verification_id"] for entry in answer.json()["items"]]


async def _accepted(world: World, merchant: Actor, device: Actor) -> str:
    answer = await world.verify(merchant, await world.code(device), "wl-030")
    assert answer.status_code == 200, answer.text
    verification_id: str = answer.json()["verification_id"]
    return verification_id


async def test_the_history_is_read_from_the_replica_and_catches_up_with_it(replicated: World, pair: Pair) -> None:
    world = replicated
    merchant = await world.merchant(["wl-030"])
    device = await world.device("张小三")
    first = await _accepted(world, merchant, device)
    await _caught_up(pair)
    assert await _history(world, device) == [first]

    await _replay(pair, paused=True)
    second = await _accepted(world, merchant, device)  # verifying writes to the primary, replica or not

    assert await _history(world, device) == [first]  # the replica has not replayed it yet
    recorded = await world.app.state.pool.fetchval("SELECT count(*) FROM verifications")
    assert recorded == 2
    await _replay(pair, paused=False)
    await _caught_up(pair)
    assert await _history(world, device) == [second, first]


async def test_the_venue_list_is_read_from_the_replica(replicated: World, pair: Pair) -> None:
    world = replicated
    await _caught_up(pair)
    await _replay(pair, paused=True)
    merchant = await world.merchant(["wl-030"], name="武隆区文化馆")

    listed = await world.client.get("/v1/venues", params={"item_code": "wl-030"})
    assert listed.status_code == 200, listed.text
    assert merchant.ids["merchant_id"] not in {v["merchant_id"] for v in listed.json()["venues"]}
    await _replay(pair, paused=False)
    await _caught_up(pair)
    listed = await world.client.get("/v1/venues", params={"item_code": "wl-030"})
    assert merchant.ids["merchant_id"] in {v["merchant_id"] for v in listed.json()["venues"]}
