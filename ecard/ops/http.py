"""Liveness, readiness, metrics, and the bare echo the load tool measures against."""

from __future__ import annotations

from typing import Any

from litestar import Controller, MediaType, Request, Response, get, post
from litestar.params import JSONBody
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ecard.ops.metrics import REGISTRY


class OpsController(Controller):
    tags = ["service"]  # noqa: RUF012
    include_in_schema = True

    @get("/healthz", summary="The process is up")
    async def healthz(self) -> dict[str, str]:
        return {"status": "ok"}

    @get("/readyz", summary="PostgreSQL and Redis answer")
    async def readyz(self, request: Request[Any, Any, Any]) -> Response[dict[str, str]]:
        checks = {"database": "ok", "cache": "ok"}
        try:
            await request.app.state.pool.fetchval("SELECT 1", timeout=1)
        except Exception:
            checks["database"] = "unavailable"
        try:
            await request.app.state.redis.ping()
        except Exception:
            checks["cache"] = "unavailable"
        ready = all(v == "ok" for v in checks.values())
        return Response({"status": "ready" if ready else "not_ready", **checks}, status_code=200 if ready else 503)

    @get("/metrics", summary="Prometheus metrics", media_type=MediaType.TEXT)
    async def metrics(self) -> Response[bytes]:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


class EchoController(Controller):
    """Mounted only with ECARD_LOAD_ECHO=1: the floor that verification throughput is measured against."""

    include_in_schema = False

    @post("/_load/echo", status_code=200)
    async def echo(self, data: JSONBody[dict[str, Any]]) -> dict[str, Any]:
        return data
