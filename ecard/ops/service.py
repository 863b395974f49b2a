"""Readiness (whether the backing services answer, each on its own), and what the service publishes about itself."""

from __future__ import annotations

import asyncpg
import msgspec
import redis.asyncio as aioredis

from ecard.kit.infra import CacheBusy, DatabaseBusy
from ecard.ops import store


class ReadinessReport(msgspec.Struct, frozen=True):
    status: str
    database: str
    cache: str

    @property
    def ready(self) -> bool:
        return self.status == "ready"


class ServiceInfo(msgspec.Struct, frozen=True):
    """GET /v1/service-info: who runs this service and where citizens complain (regulation art. 20)."""

    issuer: str
    complaint_phone: str
    complaint_url: str
    # how many days an operator has to answer a complaint
    complaint_due_days: int


class Readiness:
    def __init__(self, pool: asyncpg.Pool, redis: aioredis.Redis, timeout_s: float = 1.0) -> None:
        self._pool = pool
        self._redis = redis
        self._timeout = timeout_s

    async def check(self) -> ReadinessReport:
        database = cache = "ok"
        try:
            await store.ping_database(self._pool, self._timeout)
        except DatabaseBusy:
            # as for the cache: every connection busy past the pool's wait
            database = "busy"
        except Exception:
            database = "unavailable"
        try:
            await store.ping_cache(self._redis)
        except CacheBusy:
            # every connection busy past the pool's wait: not ready for more, but not down either
            cache = "busy"
        except Exception:
            cache = "unavailable"
        ready = database == cache == "ok"
        return ReadinessReport("ready" if ready else "not_ready", database, cache)
