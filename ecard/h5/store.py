"""Redis keys of the citizen pages: page sessions, each kept only under its token's SHA-256."""

from __future__ import annotations

import redis.asyncio as aioredis

from ecard.h5.models import PageSession


def _session_key(prefix: str, digest: bytes) -> str:
    return f"{prefix}h5:session:{{{digest.hex()}}}"


async def put_session(redis: aioredis.Redis, prefix: str, digest: bytes, session: PageSession, ttl_s: int) -> None:
    await redis.set(_session_key(prefix, digest), session.key_id, ex=ttl_s)


async def touch_session(redis: aioredis.Redis, prefix: str, digest: bytes, ttl_s: int) -> PageSession | None:
    """The session, its life renewed for `ttl_s` from now (sliding), or None when it is unknown or over."""
    raw = await redis.getex(_session_key(prefix, digest), ex=ttl_s)
    if raw is None:
        return None
    return PageSession(key_id=raw.decode() if isinstance(raw, bytes) else str(raw))


async def drop_session(redis: aioredis.Redis, prefix: str, digest: bytes) -> None:
    await redis.delete(_session_key(prefix, digest))
