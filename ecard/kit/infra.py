"""Connections to PostgreSQL and Redis, migrations, and what their outages look like."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import traceback
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TypeAlias, cast
from urllib.parse import unquote, urlsplit, urlunsplit

import asyncpg
import redis.asyncio as aioredis
import redis.exceptions
from asyncpg.pool import PoolConnectionProxy
from redis.asyncio.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

log = logging.getLogger("ecard.infra")

# What a store function runs its SQL on: a pooled connection inside a transaction, or the pool itself.
Conn: TypeAlias = "asyncpg.Connection[Any] | PoolConnectionProxy[Any]"
Executor: TypeAlias = "asyncpg.Connection[Any] | PoolConnectionProxy[Any] | asyncpg.Pool[Any]"

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
# Any fixed number works; it only has to be the same on every host running `ecard migrate`.
_MIGRATION_LOCK = 0x6563617264


# A cluster that has lost a master and not yet promoted its replica, or is moving the slot asked for.
_CLUSTER_OUTAGE = (redis.exceptions.ClusterError, redis.exceptions.TryAgainError, redis.exceptions.SlotNotCoveredError)


def unavailable_code(exc: BaseException) -> str | None:
    """The 503 problem code for an outage of a backing service, or None for a real bug.

    A cache or database whose connections are all busy beyond the pool's wait is `overloaded`, not away.
    A bare OSError or timeout counts only when it came out of the database or cache client: a local file
    that cannot be read, or a peer's socket, is not PostgreSQL being away."""
    if isinstance(exc, CacheBusy | DatabaseBusy):
        return "overloaded"
    if isinstance(exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
        return "cache_unavailable"
    if isinstance(exc, _CLUSTER_OUTAGE):
        return "cache_unavailable"
    if isinstance(
        exc,
        asyncpg.exceptions.ConnectionDoesNotExistError
        | asyncpg.exceptions.CannotConnectNowError
        | asyncpg.exceptions.InterfaceError
        | asyncpg.exceptions.ConnectionFailureError
        | asyncpg.exceptions.AdminShutdownError
        | asyncpg.exceptions.TooManyConnectionsError,
    ):
        return "database_unavailable"
    if isinstance(exc, OSError | asyncio.TimeoutError):
        return {"asyncpg": "database_unavailable", "redis": "cache_unavailable"}.get(_raised_in(exc) or "")
    return None


def _raised_in(exc: BaseException) -> str | None:
    """Which client library (asyncpg or redis) the exception came out of, by the innermost of its frames."""
    modules = [str(frame.f_globals.get("__name__", "")) for frame, _ in traceback.walk_tb(exc.__traceback__)]
    for module in reversed(modules):
        package = module.partition(".")[0]
        if package in {"asyncpg", "redis"}:
            return package
    return None


async def _init_connection(conn: asyncpg.Connection[Any]) -> None:
    # jsonb columns come back as Python values rather than strings
    import json  # noqa: PLC0415

    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _keep_session(_: asyncpg.Connection[Any]) -> None:
    # asyncpg still rolls back an open transaction on release; the full RESET ALL / UNLISTEN /
    # advisory-unlock query it would run besides costs a round trip per request, and the
    # service leaves no session state behind (transaction-scoped advisory locks only).
    return None


class DatabaseBusy(Exception):  # noqa: N818 - named for what the caller sees, like CacheBusy
    """Every database connection stayed busy for the pool's whole wait: the service is overloaded, the database
    is not down."""


class BoundedDatabasePool(asyncpg.Pool):
    """asyncpg's pool behind a gate of `max_size` permits: a query finding every connection busy queues at the
    gate up to `wait_s`, then is shed with DatabaseBusy (503 `overloaded`), rather than queueing without bound.

    asyncpg's own acquire timeout is never used: it can leak a connection when it races a cancellation
    (MagicStack/asyncpg#547, #955). Past the gate, asyncpg's acquire finds a connection free and waits at most
    for it to be (re)made, which its connect timeout bounds (503 `database_unavailable`). A permit is given back
    when asyncpg has put the connection back in its queue, by whatever way it got there (release, a connection
    lost while held, terminate), so a cancelled release cannot free it early. A caller's acquire timeout only
    shortens its wait at the gate."""

    __slots__ = ("_gate", "wait_s")

    def __init__(self, *args: Any, max_size: int, wait_s: float, **kwargs: Any) -> None:
        super().__init__(*args, max_size=max_size, **kwargs)
        self.wait_s = wait_s
        self._gate = asyncio.Semaphore(max_size)

    async def _acquire(self, timeout: float | None) -> PoolConnectionProxy[Any]:  # noqa: ASYNC109 - asyncpg API
        # every way in (Pool.acquire awaited or entered, and pool.fetch*, execute*, copy_* through it) comes here
        if self._gate.locked():
            await self._queue_at_gate(self.wait_s if timeout is None else min(timeout, self.wait_s))
        else:
            await self._gate.acquire()  # a permit is free: returns without suspending
        try:
            proxy: PoolConnectionProxy[Any] = await super()._acquire(None)  # type: ignore[misc]
        except BaseException:
            self._gate.release()
            raise
        # the holder's in-use future is done once asyncpg has put the connection back in its queue
        in_use: asyncio.Future[None] = proxy._holder._in_use  # type: ignore[attr-defined]  # noqa: SLF001
        in_use.add_done_callback(self._give_back)
        return proxy

    async def _queue_at_gate(self, wait_s: float) -> None:
        try:
            async with asyncio.timeout(wait_s):
                await self._gate.acquire()
        except TimeoutError:
            from ecard.kit.metrics import SHED  # noqa: PLC0415 - as in BoundedPool

            SHED.labels(reason="database_pool").inc()
            raise DatabaseBusy("every database connection stayed busy") from None

    def _give_back(self, _: asyncio.Future[None]) -> None:
        self._gate.release()


async def create_pool(url: str, min_size: int = 2, max_size: int = 10, wait_s: float = 5.0) -> asyncpg.Pool:
    """A pool of at most `max_size` connections; a query finding them all busy queues up to `wait_s` for one,
    then fails with DatabaseBusy."""
    pool = BoundedDatabasePool(
        url,
        wait_s=wait_s,
        connection_class=asyncpg.Connection,
        record_class=asyncpg.Record,
        min_size=min_size,
        max_size=max_size,
        max_queries=50000,
        loop=None,
        init=_init_connection,
        reset=_keep_session,
        command_timeout=5,
        timeout=3,
        # a connection lost while PostgreSQL was away is dropped, not reused
        max_inactive_connection_lifetime=60,
    )
    return await pool


class CacheBusy(redis.exceptions.RedisError):
    """Every connection to the cache stayed busy for the pool's whole wait: the service is overloaded, the
    cache is not down (so this is deliberately no ConnectionError)."""


class BoundedPool(aioredis.ConnectionPool):
    """At most `max_connections` to Redis; a command finding them all busy queues for one up to `wait_s`, then
    is shed with CacheBusy (503 `overloaded`). The fast path (a free connection) takes no extra lock."""

    def __init__(self, *, wait_s: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.wait_s = wait_s
        self._freed = asyncio.Condition()
        self._waiting = 0

    async def get_connection(self, *_: object, **__: object) -> AbstractConnection:
        deadline: float | None = None
        while True:
            try:
                connection: AbstractConnection = await super().get_connection()  # type: ignore[no-untyped-call]
            except redis.exceptions.MaxConnectionsError:
                loop = asyncio.get_running_loop()
                deadline = deadline if deadline is not None else loop.time() + self.wait_s
                await self._wait_until_free(deadline - loop.time())
            else:
                return connection

    async def _wait_until_free(self, remaining_s: float) -> None:
        self._waiting += 1
        try:
            async with self._freed:
                async with asyncio.timeout(max(0.0, remaining_s)):
                    await self._freed.wait_for(self.can_get_connection)
        except TimeoutError:
            # imported here: `ecard serve` must set up shared metrics before prometheus_client is first imported
            from ecard.kit.metrics import SHED  # noqa: PLC0415

            SHED.labels(reason="cache_pool").inc()
            raise CacheBusy("every cache connection stayed busy") from None
        finally:
            self._waiting -= 1

    async def release(self, connection: AbstractConnection) -> None:
        await super().release(connection)
        if self._waiting:
            async with self._freed:
                self._freed.notify()


def create_redis(url: str, max_connections: int = 200, wait_s: float = 1.0) -> aioredis.Redis:
    """A Redis client whose pool holds at most `max_connections`; when all are busy a command queues up to
    `wait_s` for one, then fails with CacheBusy. A `redis+cluster://` URL gives a cluster client."""
    if url.startswith(CLUSTER_SCHEME):
        return _create_cluster(url)
    pool = BoundedPool.from_url(
        url,
        wait_s=wait_s,
        socket_connect_timeout=1,
        socket_timeout=2,
        health_check_interval=10,
        retry_on_timeout=False,
        max_connections=max_connections,
    )
    return aioredis.Redis.from_pool(pool)


# --- Redis Cluster (issue 13, scale-out) ------------------------------------------------------------------

CLUSTER_SCHEME = "redis+cluster://"


def _topology_changing(exc: AttributeError | RuntimeError) -> redis.exceptions.ClusterDownError:
    return redis.exceptions.ClusterDownError(f"the cluster's topology is changing ({type(exc).__name__})")


class _ClusterPipeline(ClusterPipeline):
    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> list[Any]:
        try:
            return await super().execute(raise_on_error, allow_redirections)
        except (AttributeError, RuntimeError) as exc:
            raise _topology_changing(exc) from exc


class _Cluster(RedisCluster):
    """redis-py's cluster client, with its failures while a failover changes the slot map reported as the cluster
    being down, which for that moment it is (503 `cache_unavailable`, never a 500): a pipeline's target node looked
    up as None (AttributeError, redis/redis-py#3835), or a write to a connection the failover closed
    (RuntimeError from the transport)."""

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().execute_command(*args, **kwargs)
        except (AttributeError, RuntimeError) as exc:
            raise _topology_changing(exc) from exc

    def pipeline(self, transaction: Any | None = None, shard_hint: Any | None = None) -> ClusterPipeline:
        if shard_hint:
            raise redis.exceptions.RedisClusterException("shard_hint is deprecated in cluster mode")
        # redis-py declares `_event_dispatcher` abstract on its typing side and sets it at run time, as for its own
        return _ClusterPipeline(self, transaction)  # type: ignore[abstract]


def _create_cluster(url: str) -> aioredis.Redis:
    """A Redis / Valkey Cluster client for `redis+cluster://[:password@]host:port[,host:port...]`.

    The client learns the slot map from any node that answers, and learns it again after a connection error
    (a failed master) or a MOVED answer (a promoted replica), so traffic recovers without a restart. Its few
    retries are safe for the service's claims: every claim is a `SET ... NX GET` of a value of its own
    (ecard/kit/cache.py), so a retried claim recognises its own earlier write. It is typed as the plain client:
    the service uses only commands both have, on keys whose hash tags keep every atomic step in one slot
    (docs/redis-keys.md)."""
    rest = url.removeprefix(CLUSTER_SCHEME)
    password, _, hosts = rest.rpartition("@")
    nodes = []
    for host_port in hosts.split("/")[0].split(","):
        host, _, port = host_port.strip().rpartition(":")
        if not host or not port.isdigit():
            raise ValueError("ECARD_REDIS_URL: redis+cluster:// wants host:port[,host:port...]")
        nodes.append(ClusterNode(host, int(port)))
    cluster = _Cluster(
        startup_nodes=nodes,
        password=unquote(password.removeprefix(":")) or None,
        socket_connect_timeout=1,
        socket_timeout=2,
        health_check_interval=10,
        max_connections=200,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=3),
    )
    return cast("aioredis.Redis", cluster)


def _read_migrations(directory: Path) -> list[tuple[str, str]]:
    return [(p.name, p.read_text(encoding="utf-8")) for p in sorted(directory.glob("[0-9][0-9][0-9][0-9]_*.sql"))]


async def migrate(url: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply the numbered SQL files not yet applied; safe from many hosts at once."""
    scripts = _read_migrations(directory)
    conn: asyncpg.Connection[Any] = await asyncpg.connect(url)
    applied_now: list[str] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " name text PRIMARY KEY, checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r["name"]: r["checksum"] for r in await conn.fetch("SELECT name, checksum FROM schema_migrations")}
            for name, sql in scripts:
                checksum = hashlib.sha256(sql.encode()).hexdigest()
                if name in done:
                    if done[name] != checksum:
                        log.warning("applied migration changed on disk", extra={"migration": name})
                    continue
                async with conn.transaction():
                    await conn.execute(sql)
                    await conn.execute("INSERT INTO schema_migrations (name, checksum) VALUES ($1, $2)", name, checksum)
                applied_now.append(name)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
    finally:
        await conn.close()
    return applied_now


def database_name(url: str) -> str:
    """The database a PostgreSQL URL names (`postgres` when it names none)."""
    return urlsplit(url).path.lstrip("/") or "postgres"


async def recreate_database(url: str, suffix: str, template: str | None = None) -> str:
    """A database of its own beside the one `url` names (`<db><suffix>`), dropped and made anew; its URL.

    For test and load runs, which must never touch the configured database's data. With `template`, a copy of
    that (migrated) database, which is much faster than migrating again."""
    parts = urlsplit(url)
    name = database_name(url) + suffix
    copy = f' TEMPLATE "{template}"' if template else ""
    admin: asyncpg.Connection[Any] = await asyncpg.connect(url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        for attempt in range(50):
            try:
                await admin.execute(f'CREATE DATABASE "{name}"{copy}')
                break
            except asyncpg.exceptions.ObjectInUseError:
                # another copy of the same template being made this moment; they take turns
                if attempt == 49:
                    raise
                await asyncio.sleep(0.1)
    finally:
        await admin.close()
    return urlunsplit(parts._replace(path="/" + name))


@contextlib.asynccontextmanager
async def connections(database_url: str, redis_url: str) -> AsyncIterator[tuple[asyncpg.Pool[Any], aioredis.Redis]]:
    """A small pool and a Redis client for one command-line job, closed after it."""
    pool = await create_pool(database_url, 1, 2)
    redis = create_redis(redis_url)
    try:
        yield pool, redis
    finally:
        await redis.aclose()
        await pool.close()
