"""Append-only, hash-chained audit records of what operators and clients changed."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ecard.kit.infra import Conn, Executor

_AUDIT_LOCK = 0x61756474


async def record(conn: Conn, actor: str, action: str, subject: str, detail: dict[str, Any]) -> None:
    """Append one entry inside the caller's transaction; never personal data in `detail`."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", _AUDIT_LOCK)
    prev = await conn.fetchval("SELECT entry_hash FROM audit_log ORDER BY entry_id DESC LIMIT 1")
    prev_hash = bytes(prev) if prev is not None else b"\x00" * 32
    payload = json.dumps([actor, action, subject, detail], sort_keys=True, ensure_ascii=False).encode()
    entry_hash = hashlib.sha256(prev_hash + payload).digest()
    await conn.execute(
        "INSERT INTO audit_log (actor, action, subject, detail, prev_hash, entry_hash) VALUES ($1, $2, $3, $4, $5, $6)",
        actor,
        action,
        subject,
        detail,
        prev_hash,
        entry_hash,
    )


async def verify_chain(conn: Executor) -> bool:
    """True when every entry's hash follows from its predecessor."""
    prev_hash = b"\x00" * 32
    for row in await conn.fetch(
        "SELECT actor, action, subject, detail, prev_hash, entry_hash FROM audit_log ORDER BY entry_id"
    ):
        payload = json.dumps(
            [row["actor"], row["action"], row["subject"], row["detail"]], sort_keys=True, ensure_ascii=False
        ).encode()
        if bytes(row["prev_hash"]) != prev_hash or hashlib.sha256(prev_hash + payload).digest() != bytes(
            row["entry_hash"]
        ):
            return False
        prev_hash = bytes(row["entry_hash"])
    return True
