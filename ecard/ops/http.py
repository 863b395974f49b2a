"""Liveness, readiness, metrics, the access middleware, and the bare echo the load tool measures against."""

from __future__ import annotations

import logging
import time
from typing import Any

from litestar import Controller, MediaType, Response, get, post
from litestar.di import NamedDependency
from litestar.enums import ScopeType
from litestar.params import JSONBody
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import CONTENT_TYPE_LATEST

from ecard.kit.metrics import REQUEST_SECONDS, exposition
from ecard.kit.problems import PROBLEM_CODE_STATE
from ecard.ops.service import Readiness, ReadinessReport, ServiceInfo


class OpsController(Controller):
    tags = ["service"]  # noqa: RUF012
    include_in_schema = True

    @get("/healthz", summary="The process is up")
    async def healthz(self) -> dict[str, str]:
        return {"status": "ok"}

    @get("/readyz", summary="PostgreSQL and Redis answer")
    async def readyz(self, readiness: NamedDependency[Readiness]) -> Response[ReadinessReport]:
        report = await readiness.check()
        return Response(report, status_code=200 if report.ready else 503)

    @get("/v1/service-info", summary="Who runs the service, and the complaint phone and URL (public)")
    async def service_info(self, service_info: NamedDependency[ServiceInfo]) -> ServiceInfo:
        return service_info

    @get("/metrics", summary="Prometheus metrics (every worker's, added up)", media_type=MediaType.TEXT)
    async def metrics(self) -> Response[bytes]:
        return Response(exposition(), media_type=CONTENT_TYPE_LATEST)


class EchoController(Controller):
    """Mounted only with ECARD_LOAD_ECHO=1: the floor that verification throughput is measured against."""

    include_in_schema = False

    @post("/_load/echo", status_code=200)
    async def echo(self, data: JSONBody[dict[str, Any]]) -> dict[str, Any]:
        return data


_access = logging.getLogger("ecard.access")


def access_middleware(app: ASGIApp) -> ASGIApp:
    """Latency histogram by route template, and one log line per refused or failed request."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        method = str(scope.get("method", ""))
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await app(scope, receive, sending)
        finally:
            elapsed = time.perf_counter() - started
            # the template the router (or the raw route in front of it) matched; nothing matched: "unmatched"
            handler = scope.get("route_handler")
            route = scope.get("path_template") or (next(iter(handler.paths)) if handler and handler.paths else None)
            route = route or "unmatched"
            REQUEST_SECONDS.labels(route=str(route), method=method, status=str(status)).observe(elapsed)
            if status >= 400:
                state = scope.get("state") or {}
                _access.info(
                    "request refused" if status < 500 else "request failed",
                    extra={
                        "route": str(route),
                        "method": method,
                        "status": status,
                        "ms": round(elapsed * 1000, 2),
                        # the stable problem code, which says why without quoting the request
                        "code": str(state.get(PROBLEM_CODE_STATE, "")),
                    },
                )

    return middleware
