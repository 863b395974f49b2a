"""Embedded PostgreSQL + Valkey lifecycle: persistence, discovery, ownership, no orphans."""

from __future__ import annotations

import contextlib
import json
import os
import stat
import subprocess
from typing import TYPE_CHECKING

import psutil
import pytest
import redis

from ecard.kit.embedded import POSTGRES_BIN_PATH, EmbeddedServices, ServiceUrls, discover
from tests.processes import gone, processes_for, server_pids

if TYPE_CHECKING:
    from pathlib import Path


def _psql(url: str, sql: str) -> str:
    return subprocess.run(
        [str(POSTGRES_BIN_PATH / "psql"), "-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", "-c", sql, url],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout.strip()


def _mark_owner_dead(data_dir: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    state = json.loads((data_dir / "services.json").read_text())
    state["owner_pid"] = dead.pid
    (data_dir / "services.json").write_text(json.dumps(state))


def test_start_persist_discover_stop_restart(tmp_path: Path) -> None:
    services = EmbeddedServices(tmp_path)
    try:
        urls = services.start()
        assert urls.database_url.startswith("postgresql://postgres@127.0.0.1:")
        assert urls.database_url.endswith("/ecard")
        assert urls.redis_url.startswith("redis://127.0.0.1:")
        assert services.start() == urls  # idempotent

        _psql(urls.database_url, "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('row-1')")
        cache = redis.Redis.from_url(urls.redis_url)
        cache.set("kept-key", "value-1")
        cache.close()

        state_file = tmp_path / "services.json"
        assert stat.S_IMODE(state_file.stat().st_mode) == 0o600
        state = json.loads(state_file.read_text())
        assert state == {
            "database_url": urls.database_url,
            "redis_url": urls.redis_url,
            "owner_pid": os.getpid(),
        }
        assert discover(tmp_path) == urls

        pids = server_pids(tmp_path)
        assert processes_for(tmp_path)
    finally:
        services.stop()

    assert not state_file.exists()
    assert discover(tmp_path) is None
    assert all(gone(pid) for pid in pids)
    assert processes_for(tmp_path) == []
    services.stop()  # second stop is harmless

    again = EmbeddedServices(tmp_path)
    try:
        urls2 = again.start()
        # Ports chosen at first start are reused when still free.
        assert urls2 == urls
        assert _psql(urls2.database_url, "SELECT v FROM kept") == "row-1"
        cache = redis.Redis.from_url(urls2.redis_url)
        assert cache.get("kept-key") == b"value-1"
        cache.close()
    finally:
        again.stop()
    assert processes_for(tmp_path) == []


def test_second_instance_shares_and_does_not_stop(tmp_path: Path) -> None:
    first = EmbeddedServices(tmp_path)
    second = EmbeddedServices(tmp_path)
    try:
        urls = first.start()
        assert second.start() == urls
        second.stop()
        assert discover(tmp_path) == urls
        assert _psql(urls.database_url, "SELECT 1") == "1"
        cache = redis.Redis.from_url(urls.redis_url)
        assert cache.ping()
        cache.close()
    finally:
        first.stop()
        second.stop()
    assert discover(tmp_path) is None
    assert processes_for(tmp_path) == []


def test_recovers_from_crashed_owner(tmp_path: Path) -> None:
    """Servers left running by a dead owner, plus stale pid files, do not block a new start."""
    services = EmbeddedServices(tmp_path)
    urls = services.start()
    # Simulate the owner dying without stop(): forget ownership, point the state at a dead pid.
    services._owner_pid = None
    _mark_owner_dead(tmp_path)
    leftovers = server_pids(tmp_path)
    assert discover(tmp_path) is None

    successor = EmbeddedServices(tmp_path)
    try:
        assert successor.start() == ServiceUrls(urls.database_url, urls.redis_url)
        assert all(gone(pid) for pid in leftovers)
    finally:
        successor.stop()
        services.stop()
    assert processes_for(tmp_path) == []

    # Servers killed outright leave stale pid/lock files (maybe naming unreaped zombies).
    third = EmbeddedServices(tmp_path)
    third.start()
    _psql(urls.database_url, "CREATE TABLE survived (v int); INSERT INTO survived VALUES (7)")
    for pid in server_pids(tmp_path):
        with contextlib.suppress(psutil.NoSuchProcess):
            psutil.Process(pid).kill()
    third._owner_pid = None
    _mark_owner_dead(tmp_path)
    assert (tmp_path / "postgres" / "postmaster.pid").exists()
    fourth = EmbeddedServices(tmp_path)
    try:
        assert fourth.start() == urls
        assert _psql(urls.database_url, "SELECT v FROM survived") == "7"
    finally:
        fourth.stop()
        third.stop()
    assert processes_for(tmp_path) == []

    # A stale valkey pidfile naming a live unrelated process (pid reuse) must not confuse start.
    (tmp_path / "valkey" / "valkey.pid").write_text(f"{os.getpid()}\n")
    fifth = EmbeddedServices(tmp_path)
    try:
        fifth.start()
    finally:
        fifth.stop()
    assert processes_for(tmp_path) == []


@pytest.fixture(autouse=True)
def _no_strays(tmp_path: Path) -> object:
    yield None
    for proc in processes_for(tmp_path):
        proc.kill()
