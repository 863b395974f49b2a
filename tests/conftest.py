"""Real PostgreSQL and Redis for every test: the configured ones when ECARD_*_URL are set, else embedded ones.

The suite runs on two cores with pytest-xdist; each worker has a database of its own (see service_urls)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from argon2 import PasswordHasher
from litestar import Litestar

from ecard.app import create_app
from ecard.catalog.seed import catalog_rows
from ecard.catalog.store import seed as seed_catalog
from ecard.config import Settings
from ecard.kit import passwords
from ecard.kit.clock import MovableClock
from ecard.kit.crypto import b64u
from ecard.kit.infra import database_name, migrate, recreate_database
from tests.support import SERVICES_ENV, World
from tests.watchdog import REPORTS, Watch, reports

# In the suite's own processes, passwords and PINs are Argon2id at small parameters (t=1, 8 MiB): the same code
# and the same hashes' format, at a hundredth of the CPU, which the suite otherwise spent half its time on. Live
# servers (tests/live.py) and load runs keep the real parameters of ecard/kit/passwords.py.
passwords._HASHER = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1)
passwords._DUMMY = passwords._HASHER.hash("ecard-timing-equaliser")


def _suffix() -> str:
    """ECARD_TEST_DB_SUFFIX lets several test runs share one PostgreSQL server, each with databases of its own."""
    return os.environ.get("ECARD_TEST_DB_SUFFIX", "_ecard_test")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> object:
    """A hung test ends its worker with its stacks reported (tests/watchdog.py) rather than the run's time limit."""
    with Watch(item.nodeid):
        return (yield)


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):
        folder = tempfile.TemporaryDirectory(prefix="ecard-hangs-")
        config.add_cleanup(folder.cleanup)
        os.environ[REPORTS] = folder.name  # the workers it starts inherit it


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    if not hasattr(config, "workerinput") and os.environ.get(REPORTS):
        for report in reports(Path(os.environ[REPORTS])):
            terminalreporter.write_sep("=", "a hung test")
            terminalreporter.write_line(report)


def pytest_sessionstart(session: pytest.Session) -> None:
    """Once per run, before any worker starts: the services, and a template database migrated once.

    The configured PostgreSQL and Redis when ECARD_DATABASE_URL and ECARD_REDIS_URL are set, else embedded ones
    for this run only. The template (`<db><suffix>_template`) is made afresh from migrations/ each run, so that
    tests never wipe a developer's data and the schema is always exactly what the migrations say; each worker's
    database and each live server's is a copy of it (CREATE DATABASE ... TEMPLATE), not migrated again."""
    if hasattr(session.config, "workerinput"):
        return  # an xdist worker: its controller prepared all this, and passes it on in SERVICES_ENV
    database_url = os.environ.get("ECARD_DATABASE_URL")
    redis_url = os.environ.get("ECARD_REDIS_URL")
    if not (database_url and redis_url):
        from ecard.kit.embedded import EmbeddedServices  # noqa: PLC0415

        folder = tempfile.TemporaryDirectory(prefix="ecard-test-")
        embedded = EmbeddedServices(Path(folder.name) / "services")
        session.config.add_cleanup(folder.cleanup)
        session.config.add_cleanup(embedded.stop)
        urls = embedded.start()
        database_url, redis_url = urls.database_url, urls.redis_url
    template_url = asyncio.run(recreate_database(database_url, f"{_suffix()}_template"))
    asyncio.run(migrate(template_url))
    os.environ[SERVICES_ENV] = json.dumps(
        {"database_url": database_url, "redis_url": redis_url, "template": database_name(template_url)}
    )


@pytest.fixture(scope="session")
def service_urls() -> tuple[str, str]:
    """(database URL, Redis URL) of this worker: a database of its own, `<db><suffix>_<worker>`, copied from the
    template (xdist's worker id, or `main` without xdist)."""
    services = json.loads(os.environ[SERVICES_ENV])
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    own = asyncio.run(recreate_database(services["database_url"], f"{_suffix()}_{worker}", services["template"]))
    return own, services["redis_url"]


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
