"""API.md, "Service": health, readiness and metrics, `ecard serve` with its settings, `ecard migrate`."""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import datetime
from pathlib import Path

import asyncpg
import httpx

from ecard.kit.infra import recreate_database
from tests.contract.support import Integrator
from tests.live import REPO, LiveEcard


class Served(LiveEcard):
    """`ecard serve --host 127.0.0.1 --port P --workers 2`."""

    def command(self) -> list[str]:
        return ["serve", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "2"]


async def test_healthz_readyz_and_metrics(api: Integrator) -> None:
    """`GET /healthz` (process up), `GET /readyz` (database and cache reachable), `GET /metrics` (Prometheus)."""
    health = await api.client.get("/healthz")
    ready = await api.client.get("/readyz")
    metrics = await api.client.get("/metrics")

    assert health.status_code == 200, health.text
    assert ready.status_code == 200, ready.text
    assert metrics.status_code == 200, metrics.text
    assert metrics.headers["content-type"].startswith("text/plain")
    assert "# TYPE " in metrics.text


async def test_a_code_lives_ecard_code_ttl_s_by_default_60(api: Integrator) -> None:
    """`ECARD_CODE_TTL_S` (code lifetime, default 60)."""
    phone = await api.phone()
    before = api.parties.clock.now()

    answer = await api.signed(phone, "POST", "/v1/codes", {})

    lifetime = datetime.fromisoformat(answer.json()["expires_at"]).timestamp() - before
    assert 59 <= lifetime <= 61


async def test_ecard_serve_with_workers_and_settings_from_the_environment(
    service_urls: tuple[str, str], tmp_path: Path
) -> None:
    """`ecard serve [--host 127.0.0.1] [--port 8000] [--workers N]` runs the service; settings come from `ECARD_*`
    environment variables, among them `ECARD_CODE_TTL_S`."""
    database_url = await recreate_database(service_urls[0], "_contract_serve")
    served = Served("cq", database_url, service_urls[1], tmp_path, ECARD_CODE_TTL_S="120")
    served.start()
    try:
        async with httpx.AsyncClient(base_url=served.base, timeout=30.0) as client:
            world = served.world(client)
            api = Integrator(world)
            phone = await api.phone()
            before = world.clock.now()
            answers = [await api.signed(phone, "POST", "/v1/codes", {}) for _ in range(4)]
    finally:
        served.stop()
    for answer in answers:
        assert answer.status_code == 201, answer.text
        lifetime = datetime.fromisoformat(answer.json()["expires_at"]).timestamp() - before
        assert 119 <= lifetime <= 125


async def test_once_ecard_serve_says_where_it_serves_a_request_there_is_answered(
    service_urls: tuple[str, str], tmp_path: Path
) -> None:
    """A script may wait for `ecard serving on http://HOST:PORT` and connect at once: it is not refused."""
    database_url = await recreate_database(service_urls[0], "_contract_announce")
    served = LiveEcard("cq", database_url, service_urls[1], tmp_path)
    process = await asyncio.create_subprocess_exec(
        *served.argv(), cwd=REPO, env=served.env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    assert process.stderr is not None
    try:
        async with asyncio.timeout(120):
            while b"ecard serving on" not in (line := await process.stderr.readline()):
                assert line, "ecard serve ended before it said where it serves"
            async with httpx.AsyncClient(timeout=30.0) as client:
                health = await client.get(f"{served.base}/healthz")
    finally:
        process.terminate()
        await process.wait()

    assert health.status_code == 200, health.text


async def test_ecard_migrate_is_idempotent_and_safe_from_many_hosts_at_once(service_urls: tuple[str, str]) -> None:
    """`ecard migrate` applies `migrations/` (idempotent, safe to run from many hosts at once)."""
    database_url = await recreate_database(service_urls[0], "_contract_migrate")
    env = {name: value for name, value in os.environ.items() if not name.startswith("ECARD_")}
    env.update(ECARD_DATABASE_URL=database_url, ECARD_REDIS_URL=service_urls[1])

    async def migrate() -> int:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "ecard.cli",
            "migrate",
            cwd=REPO,
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        return await asyncio.wait_for(process.wait(), timeout=120)

    at_once = await asyncio.gather(*(migrate() for _ in range(3)))
    again = await migrate()

    assert at_once == [0, 0, 0]
    assert again == 0
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM catalog_items") == 44
        assert await conn.fetchval("SELECT count(*) FROM catalog_versions") == 1
    finally:
        await conn.close()
