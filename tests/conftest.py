"""Real PostgreSQL and Redis for every test: the configured ones when ECARD_*_URL are set, else embedded ones."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from litestar import Litestar

from ecard.app import create_app
from ecard.catalog.seed import catalog_rows
from ecard.catalog.store import seed as seed_catalog
from ecard.config import Settings
from ecard.kit.clock import MovableClock
from ecard.kit.crypto import b64u
from ecard.kit.infra import migrate, recreate_database
from tests.support import World


def _test_database(url: str) -> str:
    """A database of its own beside the configured one, made afresh each session, so tests never wipe a
    developer's data and the schema is always exactly what migrations/ says. ECARD_TEST_DB_SUFFIX lets
    several test runs share one server."""
    return asyncio.run(recreate_database(url, os.environ.get("ECARD_TEST_DB_SUFFIX", "_ecard_test")))


@pytest.fixture(scope="session")
def service_urls() -> Iterator[tuple[str, str]]:
    database_url = os.environ.get("ECARD_DATABASE_URL")
    redis_url = os.environ.get("ECARD_REDIS_URL")
    if database_url and redis_url:
        test_url = _test_database(database_url)
        asyncio.run(migrate(test_url))
        yield test_url, redis_url
        return
    from ecard.kit.embedded import EmbeddedServices  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="ecard-test-") as folder:
        embedded = EmbeddedServices(Path(folder) / "services")
        urls = embedded.start()
        try:
            asyncio.run(migrate(urls.database_url))
            yield urls.database_url, urls.redis_url
        finally:
            embedded.stop()


@pytest.fixture
def settings(service_urls: tuple[str, str], tmp_path: Path) -> Settings:
    database_url, redis_url = service_urls
    return Settings(
        database_url=database_url,
        redis_url=redis_url,
        data_dir=tmp_path / "data",
        # a fresh prefix per test is a clean Redis without flushing anyone's data
        redis_prefix=f"ecardtest:{uuid.uuid4().hex[:12]}:",
        secret_key=b64u(os.urandom(32)),
        db_pool_min=1,
        db_pool_max=8,
    )


async def reset_database(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        # every table the migrations made, so that a new capability's tables are emptied without a list to keep
        tables = await conn.fetch(
            "SELECT quote_ident(tablename) AS name FROM pg_tables"
            " WHERE schemaname = current_schema() AND tablename <> 'schema_migrations'"
        )
        await conn.execute(f"TRUNCATE {', '.join(t['name'] for t in tables)} RESTART IDENTITY CASCADE")
        async with conn.transaction():
            await seed_catalog(conn, catalog_rows())
    finally:
        await conn.close()


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock()


@pytest.fixture
async def world(settings: Settings, clock: MovableClock) -> AsyncIterator[World]:
    assert settings.database_url
    await reset_database(settings.database_url)
    app = create_app(settings, clock=clock)
    # In the test's own event loop (Litestar's AsyncTestClient runs the app on a thread of its own),
    # so that tests can reach the service's collaborators too.
    async with (
        running(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),  # type: ignore[arg-type]
            base_url="http://testserver.local",
        ) as client,
    ):
        yield World(app, client, clock)


@contextlib.asynccontextmanager
async def running(app: Litestar) -> AsyncIterator[None]:
    """The app's lifespan, entered and left in one task (anyio's cancel scopes insist on that)."""
    started, stop = asyncio.Event(), asyncio.Event()

    async def lifespan() -> None:
        async with app.lifespan():
            started.set()
            await stop.wait()

    task = asyncio.create_task(lifespan())
    waiter = asyncio.create_task(started.wait())
    await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        waiter.cancel()
        await task  # raises the startup error
    try:
        yield
    finally:
        stop.set()
        await task
