"""Three `ecard serve` processes sharing one Redis Cluster and one database, as three hosts would.

Single use, nonces, lockouts and status changes hold across all of them: whichever process a request reaches, it
answers as if there were one."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Iterator

import asyncpg
import httpx
import pytest

from ecard.operators.models import LoginPolicy
from tests.live import LiveEcard, LiveWorld
from tests.scaleout.cluster import RedisClusterProcesses
from tests.scaleout.servers import running_servers
from tests.support import problem, totp_now

SERVERS = 3
RACE = 300


@pytest.fixture(scope="module")
def servers(
    service_urls: tuple[str, str], redis_cluster: RedisClusterProcesses, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[LiveEcard]]:
    database_url, _ = service_urls
    with running_servers(
        database_url, redis_cluster.url, tmp_path_factory.mktemp("servers"), "scaleout", SERVERS
    ) as started:
        yield started


@pytest.fixture
async def worlds(servers: list[LiveEcard]) -> AsyncIterator[list[LiveWorld]]:
    """The parties, once for each process; they share one operator session (it lives in the cache)."""
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                httpx.AsyncClient(base_url=server.base, timeout=60, limits=httpx.Limits(max_connections=RACE))
            )
            for server in servers
        ]
        made = [server.world(client) for server, client in zip(servers, clients, strict=True)]
        token = await made[0].operator_token()
        for server in servers:
            server.token = token
        yield made


async def _recorded(server: LiveEcard, card_id: str) -> int:
    conn = await asyncpg.connect(server.env["ECARD_DATABASE_URL"])
    try:
        count: int = await conn.fetchval("SELECT count(*) FROM verifications WHERE card_id = $1", card_id)
    finally:
        await conn.close()
    return count


async def test_a_300_way_race_on_one_code_across_three_processes_gives_exactly_one_accept(
    worlds: list[LiveWorld],
) -> None:
    merchant = await worlds[0].merchant(["wl-030"])
    device = await worlds[1].device("张小三")
    code = await worlds[2].code(device)

    answers = await asyncio.gather(*(worlds[n % SERVERS].verify(merchant, code) for n in range(RACE)))

    assert Counter(answer.status_code for answer in answers) == {200: 1, 409: RACE - 1}
    assert {problem(answer)[1] for answer in answers if answer.status_code == 409} == {"code_already_used"}
    assert await _recorded(worlds[0].live, device.ids["card_id"]) == 1


async def test_a_request_replayed_to_another_process_is_refused_as_nonce_reused(worlds: list[LiveWorld]) -> None:
    merchant = await worlds[0].merchant(["wl-030"])
    device = await worlds[0].device("张小三")
    first = await worlds[0].code(device)
    nonce = "one-nonce-for-three-processes"
    answer = await worlds[0].signed(
        merchant, "POST", "/v1/verifications", {"code": first, "item_code": "wl-030"}, nonce=nonce
    )
    assert answer.status_code == 200, answer.text
    second = await worlds[0].code(device)
    for world in worlds[1:]:
        replay = await world.signed(
            merchant, "POST", "/v1/verifications", {"code": second, "item_code": "wl-030"}, nonce=nonce
        )
        assert problem(replay) == (401, "nonce_reused")
    # and the code the replays carried was not taken by them
    assert (await worlds[2].verify(merchant, second)).status_code == 200


async def test_a_card_suspended_on_one_process_is_refused_at_once_on_the_others(worlds: list[LiveWorld]) -> None:
    merchant = await worlds[0].merchant(["wl-030"])
    device = await worlds[0].device("张小三")
    codes = [await worlds[0].code(device) for _ in range(SERVERS - 1)]

    assert (await worlds[0].set_status(device.ids["card_id"], "suspended")).status_code == 200

    for world, code in zip(worlds[1:], codes, strict=True):
        assert problem(await world.verify(merchant, code)) == (403, "card_suspended")


async def test_failed_logins_spread_over_three_processes_lock_the_source_out_on_all_of_them(
    worlds: list[LiveWorld],
) -> None:
    policy = LoginPolicy()
    username = "lockout-across-processes"
    password, uri = await worlds[0].new_operator(username)
    answers = []
    for n in range(policy.pair_failures):
        login = {"username": username, "password": "wrong-password-123", "totp": "000000"}
        answers.append(await worlds[n % SERVERS].client.post("/v1/admin/sessions", json=login))

    assert [problem(answer)[1] for answer in answers] == ["operator_credentials_invalid"] * (
        policy.pair_failures - 1
    ) + ["operator_locked"]
    # the right password, on any process, from this source: still locked out
    for world in worlds:
        right = {"username": username, "password": password, "totp": totp_now(uri)}
        assert problem(await world.client.post("/v1/admin/sessions", json=right)) == (423, "operator_locked")
