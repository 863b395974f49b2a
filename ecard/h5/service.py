"""Page sessions of the citizen pages: opened by a device-signed request, read by the server-rendered pages.

A session only lets the pages be read as the device that opened it; every change is a device-signed API request
from the page's script. The device key is looked up again on every read, so a retired device (a newer enrolment,
an operator's action) reads nothing more."""

from __future__ import annotations

import hashlib

import redis.asyncio as aioredis

from ecard.clients import ClientDirectory
from ecard.h5 import store
from ecard.h5.models import PageSession
from ecard.kit.ids import random_token
from ecard.kit.principal import ClientKind, Principal

SESSION_BYTES = 32
# a token longer than this was never ours: refused before any hashing or look-up
MAX_TOKEN_CHARS = 64


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class PageSessions:
    def __init__(
        self, redis: aioredis.Redis, directory: ClientDirectory, prefix: str, ttl_s: int, *, https: bool
    ) -> None:
        self._redis = redis
        self._directory = directory
        self._prefix = prefix
        self.ttl_s = ttl_s
        # the service's public URL is https (behind a TLS proxy the request itself may come as http)
        self.https = https

    async def open(self, device: Principal) -> str:
        """A new session for the device that signed the request; the token goes to the browser only."""
        token = random_token(SESSION_BYTES)
        await store.put_session(self._redis, self._prefix, _digest(token), PageSession(device.key_id), self.ttl_s)
        return token

    async def device_for(self, token: str | None) -> Principal | None:
        """The device a session stands for, while both the session and the device's key are live."""
        if not token or len(token) > MAX_TOKEN_CHARS:
            return None
        session = await store.touch_session(self._redis, self._prefix, _digest(token), self.ttl_s)
        if session is None:
            return None
        client = await self._directory.get(session.key_id)
        if client is None or client.status != "active" or client.kind is not ClientKind.DEVICE:
            return None
        return Principal(client.key_id, client.kind, client.owner_id, client.parent_id)

    async def close(self, token: str | None) -> None:
        if token and len(token) <= MAX_TOKEN_CHARS:
            await store.drop_session(self._redis, self._prefix, _digest(token))
