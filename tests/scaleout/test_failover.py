"""A Redis master killed mid-traffic: answers are 503 `cache_unavailable` while its replica takes over, never an
accept twice nor an accept without its record, and traffic recovers without restarting anything."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from ecard.codes import decode
from ecard.config import Settings
from ecard.kit import cache
from tests.live import LiveEcard, LiveWorld
from tests.scaleout.cluster import RedisClusterProcesses, running_cluster
from tests.scaleout.servers import running_servers
from tests.support import Actor, World, problem

SERVERS = 2
CODES = 240
ACCEPTS_BEFORE_THE_KILL = 20
ACCEPTS_TO_RECOVER = 20
DEADLINE_S = 45.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterProcesses]:
    """A cluster of this module's own: the test kills one of its masters."""
    with running_cluster(tmp_path_factory.mktemp("failover-cluster")) as made:
        yield made


@pytest.fixture(scope="module")
def servers(
    service_urls: tuple[str, str], cluster: RedisClusterProcesses, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[LiveEcard]]:
    database_url, _ = service_urls
    with running_servers(
        database_url, cluster.url, tmp_path_factory.mktemp("failover-servers"), "failover", SERVERS
    ) as started:
        yield started


@pytest.fixture
async def worlds(servers: list[LiveEcard]) -> AsyncIterator[list[LiveWorld]]:
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(httpx.AsyncClient(base_url=server.base, timeout=30)) for server in servers
        ]
        made = [server.world(client) for server, client in zip(servers, clients, strict=True)]
        token = await made[0].operator_token()
        for server in servers:
            server.token = token
        yield made


class Traffic:
    """Every code presented to every process at once (a terminal's retry racing itself), and what came back."""

    def __init__(self, worlds: list[LiveWorld], merchant: Actor) -> None:
        self.worlds = worlds
        self.merchant = merchant
        self.accepted: dict[str, list[str]] = defaultdict(list)  # code -> verification ids
        self.unavailable = 0
        self.accepts_after_unavailable = 0
        self.other: list[tuple[int, str]] = []

    async def present(self, code: str) -> None:
        answers = await asyncio.gather(*(world.verify(self.merchant, code) for world in self.worlds))
        for answer in answers:
            if answer.status_code == 200:
                self.accepted[code].append(answer.json()["verification_id"])
                if self.unavailable:
                    self.accepts_after_unavailable += 1
            elif problem(answer) == (503, "cache_unavailable"):
                self.unavailable += 1
            elif problem(answer) != (409, "code_already_used"):
                self.other.append(problem(answer))


async def _recorded(server: LiveEcard, verification_ids: list[str]) -> set[str]:
    conn = await asyncpg.connect(server.env["ECARD_DATABASE_URL"])
    try:
        rows = await conn.fetch(
            "SELECT verification_id FROM verifications WHERE verification_id = ANY($1::text[])", verification_ids
        )
    finally:
        await conn.close()
    return {row["verification_id"] for row in rows}


async def test_a_master_killed_mid_traffic_costs_503s_only_and_traffic_recovers_on_its_own(
    worlds: list[LiveWorld], servers: list[LiveEcard], cluster: RedisClusterProcesses
) -> None:
    merchant = await worlds[0].merchant(["wl-030"])
    devices = [await worlds[n % SERVERS].device(f"张小{n}") for n in range(4)]
    codes = [await worlds[n % SERVERS].code(devices[n % len(devices)]) for n in range(CODES)]
    pids = [server.process.pid for server in servers if server.process is not None]
    # the master of the merchant's nonces: while it is away, every verification of this merchant needs it
    victim = cluster.master_of(merchant.key_id)
    traffic = Traffic(worlds, merchant)
    killed_at: float | None = None

    for code in codes:
        await traffic.present(code)
        if killed_at is None and len(traffic.accepted) >= ACCEPTS_BEFORE_THE_KILL:
            cluster.kill(victim)
            killed_at = time.monotonic()
        if traffic.accepts_after_unavailable >= ACCEPTS_TO_RECOVER:
            break
        assert killed_at is None or time.monotonic() - killed_at < DEADLINE_S, "traffic did not recover"

    assert killed_at is not None
    assert traffic.other == []
    assert traffic.unavailable > 0, "the outage was never seen"
    assert traffic.accepts_after_unavailable >= ACCEPTS_TO_RECOVER, "traffic did not recover"
    # never an accept twice, never an accept without its record
    assert all(len(ids) == 1 for ids in traffic.accepted.values())
    every_id = [ids[0] for ids in traffic.accepted.values()]
    assert await _recorded(servers[0], every_id) == set(every_id)
    # nobody restarted anything: the same processes serve, and the cluster healed itself
    assert [server.process.pid for server in servers if server.process is not None] == pids
    assert all(server.process is not None and server.process.poll() is None for server in servers)
    cluster.wait_healthy()
    assert cluster.master_of(merchant.key_id) is not victim


async def _until_gone(cluster: RedisClusterProcesses, key: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while True:
        node = cluster.master_of(key)
        with node.client() as client:
            if not client.exists(key):
                return
        assert time.monotonic() < deadline, "the claim was never given back"
        await asyncio.sleep(0.05)


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[RedisClusterProcesses]:
    with running_cluster(tmp_path / "cluster") as made:
        yield made


@pytest.fixture
def settings(settings: Settings, own_cluster: RedisClusterProcesses) -> Settings:
    return dataclasses.replace(settings, redis_url=own_cluster.url)


async def test_a_code_presented_while_its_nonces_master_fails_is_not_used_up(
    world: World, own_cluster: RedisClusterProcesses
) -> None:
    merchant = await world.merchant(["wl-030"])
    device = await world.device("张小三")
    victim = own_cluster.master_of(merchant.key_id)
    # a code whose claim lies on another master than the merchant's nonces
    code = await world.code(device)
    while own_cluster.master_of(f"{cache.shard_tag(decode(code).cti)}") is victim:
        code = await world.code(device)

    own_cluster.kill(victim)
    during = await world.verify(merchant, code)

    # accepted at once (the promotion came within the client's retries), or refused for the outage only
    assert during.status_code == 200 or problem(during) == (503, "cache_unavailable"), during.text
    if during.status_code != 200:
        # and then the code is given back: once the replica has taken over and the claim is gone, it is accepted
        own_cluster.wait_healthy()
        claim = (
            f"{world.app.state.settings.redis_prefix}{cache.shard_tag(decode(code).cti)}:cti:{decode(code).cti.hex()}"
        )
        await _until_gone(own_cluster, claim)
        again = await world.verify(merchant, code)
        assert again.status_code == 200, again.text
    assert problem(await world.verify(merchant, code)) == (409, "code_already_used")


def test_the_harness_removes_its_files(tmp_path: Path) -> None:
    with running_cluster(tmp_path / "c") as made:
        assert all(node.alive for node in made.nodes)
    assert not (tmp_path / "c").exists()
    assert not any(node.alive for node in made.nodes)
