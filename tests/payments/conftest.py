"""Payments against the stand-in bank as a real process and a merchant's callback server on loopback."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from ecard.config import Settings
from ecard.kit.jwk import parse_public_jwk
from ecard.kit.signing import authority, parse_signature_params, require_peer, verify_signature
from tests.live import free_port
from tests.standins import StandinBank
from tests.support import Actor, Parties, World

PIN = "135790"
WATER = "wl-043"


@pytest.fixture(scope="session")
def bank(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandinBank]:
    """One stand-in bank for the session (card ids are fresh per test, so tests do not meet there)."""
    with StandinBank.running(tmp_path_factory.mktemp("bank")) as standin:
        yield standin


@pytest.fixture
def settings(settings: Settings, bank: StandinBank) -> Settings:
    """The service with the bank, callbacks retried quickly, and recovery left to the tests that call it."""
    return dataclasses.replace(
        settings,
        bank_url=bank.base,
        callback_base_delay_s=0.05,
        callback_poll_s=0.05,
        callback_timeout_s=2.0,
        callback_allow_loopback=True,
        payment_recovery_grace_s=3600.0,
        payment_recovery_interval_s=3600.0,
    )


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


class MerchantServer:
    """A merchant's callback endpoint: records what it is sent; can be down (nothing listens) or answer an error."""

    def __init__(self) -> None:
        self.port = free_port()
        self.received: list[Received] = []
        self.status = 200
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/ecard/notify"

    def up(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                owner.received.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(owner.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def down(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            assert self._thread is not None
            self._thread.join(timeout=5)
            self._server = None


@pytest.fixture
def merchant_server() -> Iterator[MerchantServer]:
    server = MerchantServer()
    server.up()
    try:
        yield server
    finally:
        server.down()


def check_signed_by_issuer(received: Received, key_set: dict[str, Any], url: str) -> None:
    """The callback carries an RFC 9421 signature that verifies with the issuer's published request key for
    callbacks, made for callbacks (tag) to this merchant server (@authority)."""
    params = parse_signature_params(received.headers, has_body=True)
    issuer, _, kid = params.keyid.partition(":")
    assert issuer == key_set["issuer"]
    jwk = next(k for k in key_set["keys"] if k["kid"] == kid)
    assert jwk["audience"] == "callback"
    key, alg, _ = parse_public_jwk({name: jwk[name] for name in ("kty", "crv", "x")})
    path = httpx.URL(url).raw_path.decode()
    verify_signature(params, key, alg, "POST", path.partition("?")[0], "", received.headers, received.body)
    require_peer(params, "ecard-callback", received.headers, {authority(url)})


async def until(check: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Wait for a background effect (a delivery, a recovery) that the service makes on its own."""
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.02)


class Shop:
    """A merchant that takes payments for water bills, a citizen with money in the bank, and the calls between."""

    def __init__(self, parties: Parties, bank: StandinBank, notify_url: str) -> None:
        self.parties = parties
        self.bank = bank
        self.notify_url = notify_url

    async def merchant(self, items: list[str] | None = None, name: str = "武隆区自来水公司") -> Actor:
        return await self.parties.merchant(items or [WATER], name=name)

    async def payer(self, balance_fen: int = 100_000, pin: str = PIN) -> Actor:
        device = await self.parties.device()
        answer = await self.parties.signed(device, "PUT", f"/v1/devices/{device.ids['device_id']}/pin", {"pin": pin})
        assert answer.status_code == 204, answer.text
        if balance_fen:
            await self.bank.credit(device.ids["card_id"], balance_fen)
        return device

    def bill_body(self, amount_fen: int = 4_250, out_bill_no: str | None = None, **extra: Any) -> dict[str, Any]:
        return {
            "out_bill_no": f"W{random.randint(0, 10**12)}" if out_bill_no is None else out_bill_no,
            "item_code": WATER,
            "amount_fen": amount_fen,
            "description": "2026年10月水费",
            "notify_url": self.notify_url,
            "expires_in_s": 3600,
            **extra,
        }

    async def create(self, merchant: Actor, body: dict[str, Any]) -> httpx.Response:
        return await self.parties.signed(merchant, "POST", "/v1/bills", body)

    async def bill(self, merchant: Actor, amount_fen: int = 4_250, **extra: Any) -> dict[str, Any]:
        answer = await self.create(merchant, self.bill_body(amount_fen, **extra))
        assert answer.status_code == 201, answer.text
        made: dict[str, Any] = answer.json()
        return made

    async def pay(self, device: Actor, bill_id: str, pin: str = PIN) -> httpx.Response:
        return await self.parties.signed(device, "POST", f"/v1/bills/{bill_id}/pay", {"pin": pin})

    async def refund(
        self, merchant: Actor, bill_id: str, amount_fen: int, out_refund_no: str | None = None
    ) -> httpx.Response:
        body = {
            "out_refund_no": out_refund_no or f"R{random.randint(0, 10**12)}",
            "amount_fen": amount_fen,
            "reason": "多收",
        }
        return await self.parties.signed(merchant, "POST", f"/v1/bills/{bill_id}/refunds", body)

    async def status(self, merchant: Actor, bill_id: str) -> str:
        answer = await self.parties.signed(merchant, "GET", f"/v1/bills/{bill_id}")
        assert answer.status_code == 200, answer.text
        status: str = answer.json()["status"]
        return status


@pytest.fixture
def shop(world: World, bank: StandinBank, merchant_server: MerchantServer) -> Shop:
    return Shop(world, bank, merchant_server.url)
