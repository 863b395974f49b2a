"""Disbursement against the stand-in bank as a real process and a paying department's callback server on loopback."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import io
import json
import random
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ecard.config import Settings
from ecard.kit.signing import sign_request
from tests.payments.conftest import MerchantServer, until
from tests.standins import StandinBank
from tests.support import Actor, Parties, World

ALLOWANCE = "wl-022"  # 城乡居民最低生活保障金发放: a disbursement item only
WATER = "wl-043"  # a payment item only
DUAL_FEN = 1_000_000

__all__ = ["ALLOWANCE", "DUAL_FEN", "Office", "until"]


@pytest.fixture(scope="session")
def bank(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandinBank]:
    with StandinBank.running(tmp_path_factory.mktemp("bank")) as standin:
        yield standin


@pytest.fixture
def settings(settings: Settings, bank: StandinBank) -> Settings:
    return dataclasses.replace(
        settings,
        bank_url=bank.base,
        callback_base_delay_s=0.05,
        callback_poll_s=0.05,
        callback_timeout_s=2.0,
        callback_allow_loopback=True,
        payment_recovery_grace_s=3600.0,
        payment_recovery_interval_s=3600.0,
        disbursement_dual_approval_fen=DUAL_FEN,
        disbursement_poll_s=0.05,
        disbursement_approval_ttl_s=3600.0,
        disbursement_concurrency=8,
    )


@pytest.fixture
def office_server() -> Iterator[MerchantServer]:
    server = MerchantServer()
    server.up()
    try:
        yield server
    finally:
        server.down()


class Office:
    """A district civil-affairs office paying allowances, the people it pays, and the calls between."""

    def __init__(self, world: Parties, bank: StandinBank, notify_url: str) -> None:
        self.world = world
        self.bank = bank
        self.notify_url = notify_url

    async def payer(self, items: list[str] | None = None, funding_fen: int = 0, name: str = "武隆区民政局") -> Actor:
        merchant = await self.world.merchant(items or [ALLOWANCE], name=name)
        if funding_fen:
            await self.bank.fund(merchant.ids["merchant_id"], funding_fen)
        return merchant

    async def person(self, name: str = "李四") -> dict[str, str]:
        return await self.world.cardholder(name)

    def row(self, person: dict[str, str], amount_fen: Any = 60_000, **extra: Any) -> dict[str, Any]:
        return {
            "out_row_no": f"R{random.randint(0, 10**12)}",
            "id_number": person["id_number"],
            "name": person["name"],
            "amount_fen": amount_fen,
            "memo": "2026年11月低保金",
            **extra,
        }

    def body(self, rows: list[dict[str, Any]], out_batch_no: str | None = None, **extra: Any) -> dict[str, Any]:
        return {
            "out_batch_no": out_batch_no or f"B{random.randint(0, 10**12)}",
            "item_code": ALLOWANCE,
            "description": "2026年11月城乡低保",
            "notify_url": self.notify_url,
            "rows": rows,
            **extra,
        }

    async def create(self, merchant: Actor, body: dict[str, Any]) -> httpx.Response:
        return await self.world.signed(merchant, "POST", "/v1/disbursements", body)

    async def create_csv(self, merchant: Actor, body: dict[str, Any], csv_text: str | None = None) -> httpx.Response:
        """The same batch as text/csv, its fields in the query."""
        if csv_text is None:
            out = io.StringIO()
            writer = csv.writer(out)
            writer.writerow(["out_row_no", "id_number", "name", "amount_fen", "memo"])
            for r in body["rows"]:
                writer.writerow([r["out_row_no"], r["id_number"], r["name"], r["amount_fen"], r["memo"]])
            csv_text = out.getvalue()
        query = httpx.QueryParams({k: body[k] for k in ("out_batch_no", "item_code", "description", "notify_url")})
        path = f"/v1/disbursements?{query}"
        raw = csv_text.encode()
        url = f"{str(self.world.client.base_url).rstrip('/')}{path}"
        now = self.world.clock.now()
        headers = sign_request("POST", url, raw, merchant.key, merchant.key_id, merchant.alg, created=now)
        return await self.world.client.post(path, content=raw, headers={"Content-Type": "text/csv", **headers})

    async def batch(self, merchant: Actor, batch_id: str) -> dict[str, Any]:
        answer = await self.world.signed(merchant, "GET", f"/v1/disbursements/{batch_id}")
        assert answer.status_code == 200, answer.text
        found: dict[str, Any] = answer.json()
        return found

    async def rows(self, merchant: Actor, batch_id: str, query: str = "") -> list[dict[str, Any]]:
        answer = await self.world.signed(merchant, "GET", f"/v1/disbursements/{batch_id}/rows{query}")
        assert answer.status_code == 200, answer.text
        items: list[dict[str, Any]] = answer.json()["items"]
        return items

    async def approve(self, batch_id: str, token: str | None = None) -> httpx.Response:
        token = token or await self.world.operator_token()
        return await self.world.client.post(
            f"/v1/admin/disbursements/{batch_id}/approve",
            json={"reason": "核对无误"},
            headers={"Authorization": f"Bearer {token}"},
        )

    async def settled(self, merchant: Actor, batch_id: str) -> dict[str, Any]:
        """The batch once the payer has finished with it (completed or failed)."""
        seen: dict[str, Any] = {}

        async def poll() -> None:
            seen.update(await self.batch(merchant, batch_id))

        deadline = time.monotonic() + 60
        await poll()
        while seen["status"] not in {"completed", "failed"}:
            assert time.monotonic() < deadline, f"batch still {seen['status']}"
            await asyncio.sleep(0.02)
            await poll()
        return seen


async def second_operator(world: World) -> str:
    """A session of another operator than `world.operator_token()`'s."""
    from tests.support import totp_now  # noqa: PLC0415

    username = f"op{random.randint(0, 10**9)}"
    password, uri = await world.new_operator(username)
    answer = await world.client.post(
        "/v1/admin/sessions", json={"username": username, "password": password, "totp": totp_now(uri)}
    )
    assert answer.status_code == 201, answer.text
    token: str = answer.json()["token"]
    return token


@pytest.fixture
def office(world: World, bank: StandinBank, office_server: MerchantServer) -> Office:
    return Office(world, bank, office_server.url)


def event_of(server: MerchantServer, event: str) -> dict[str, Any] | None:
    for received in server.received:
        body = json.loads(received.body)
        if body.get("event") == event:
            found: dict[str, Any] = body
            return found
    return None
