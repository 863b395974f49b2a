"""Several `ecard serve` processes of one installation, sharing one database and one Redis Cluster."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path

from tests.live import LiveEcard


def sharing(first: LiveEcard, folder: Path) -> LiveEcard:
    """Another process of `first`'s installation: the same database, cache, key prefix and master key."""
    other = LiveEcard(first.issuer, first.env["ECARD_DATABASE_URL"], first.env["ECARD_REDIS_URL"], folder)
    for name in ("ECARD_REDIS_PREFIX", "ECARD_SECRET_KEY"):
        other.env[name] = first.env[name]
    return other


@contextlib.contextmanager
def running_servers(
    database_url: str, cluster_url: str, folder: Path, name: str, count: int
) -> Iterator[list[LiveEcard]]:
    """`count` processes started on the cluster, stopped afterwards."""
    first = asyncio.run(LiveEcard.create("cq", (database_url, cluster_url), folder / "0", name=name))
    started = [first, *(sharing(first, folder / str(n)) for n in range(1, count))]
    try:
        for server in started:
            server.start()
        yield started
    finally:
        for server in started:
            server.stop()
