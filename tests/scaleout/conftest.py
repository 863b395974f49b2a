"""The scale-out tests: the service on a real Redis Cluster (tests/scaleout/cluster.py) instead of one Redis."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from ecard.config import Settings
from tests.scaleout.cluster import RedisClusterProcesses, running_cluster


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterProcesses]:
    """One 3-master / 3-replica cluster for this test process, shut down and removed afterwards."""
    with running_cluster(tmp_path_factory.mktemp("redis-cluster")) as cluster:
        yield cluster


@pytest.fixture
def settings(settings: Settings, redis_cluster: RedisClusterProcesses) -> Settings:
    """The suite's settings, with ECARD_REDIS_URL naming the cluster."""
    return dataclasses.replace(settings, redis_url=redis_cluster.url)
