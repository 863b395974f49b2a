"""Operators' tests: logins from addresses of the test's choosing, and what they cost in Argon2 checks."""

from __future__ import annotations

import contextlib

import httpx

from ecard.kit.metrics import REGISTRY
from tests.support import World, totp_now


def login_checks() -> float:
    """Argon2 checks the login lane has run in this process so far."""
    return REGISTRY.get_sample_value("ecard_argon2_runs_total", {"lane": "login"}) or 0.0


class Addresses:
    """HTTP clients of the service under test, each seen by it as coming from a source address of its own."""

    def __init__(self, world: World, stack: contextlib.AsyncExitStack) -> None:
        self._world = world
        self._stack = stack
        self._clients: dict[str, httpx.AsyncClient] = {}

    async def client(self, address: str) -> httpx.AsyncClient:
        if address not in self._clients:
            transport = httpx.ASGITransport(app=self._world.app, client=(address, 40000))  # type: ignore[arg-type]
            self._clients[address] = await self._stack.enter_async_context(
                httpx.AsyncClient(transport=transport, base_url="http://testserver.local")
            )
        return self._clients[address]

    async def login(self, address: str, username: str, password: str, totp: str) -> httpx.Response:
        client = await self.client(address)
        return await client.post("/v1/admin/sessions", json={"username": username, "password": password, "totp": totp})


def to_start_of_window(world: World, window_s: int) -> None:
    """Move the clock just past the start of a throttle window: the windows are fixed (`now // window_s`), and the
    clock follows real time, so a test whose attempts straddled a window's end would see its count split in two."""
    now = world.clock.now()
    world.clock.advance(window_s - now % window_s + 0.001)


async def new_operator(world: World, username: str = "alice") -> tuple[str, str, str]:
    password, uri = await world.app.state.operators.add(username)
    return username, password, uri


def current_totp(world: World, uri: str) -> str:
    return totp_now(uri, at=world.clock.now())


def wrong_totp(world: World, uri: str) -> str:
    """A six-digit code that no step the server accepts right now (previous, current, next) would show."""
    now = world.clock.now()
    accepted = {totp_now(uri, at=now + step) for step in (-30, 0, 30)}
    return next(c for c in (f"{n:06d}" for n in range(0, 10**6, 7919)) if c not in accepted)
