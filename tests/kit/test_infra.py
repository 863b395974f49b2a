"""What counts as an outage of a backing service (503) and what is a real bug (500)."""

from __future__ import annotations

import socket
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from ecard.kit.infra import create_redis, unavailable_code


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_postgresql_refusing_connections_is_database_unavailable() -> None:
    with pytest.raises(OSError) as raised:
        await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{_closed_port()}/postgres", timeout=2)
    assert unavailable_code(raised.value) == "database_unavailable"


async def test_redis_refusing_connections_is_cache_unavailable() -> None:
    client: aioredis.Redis = create_redis(f"redis://127.0.0.1:{_closed_port()}/0")
    try:
        with pytest.raises(Exception) as raised:
            await client.ping()
    finally:
        await client.aclose()
    assert unavailable_code(raised.value) == "cache_unavailable"


def test_a_local_file_error_is_a_real_error(tmp_path: Path) -> None:
    with pytest.raises(OSError) as missing:
        (tmp_path / "absent.key").read_bytes()
    assert unavailable_code(missing.value) is None
    with pytest.raises(OSError) as denied:
        tmp_path.write_text("a folder is not a file")
    assert unavailable_code(denied.value) is None


def test_a_timeout_outside_the_clients_is_a_real_error() -> None:
    with pytest.raises(TimeoutError) as raised:
        raise TimeoutError
    assert unavailable_code(raised.value) is None
