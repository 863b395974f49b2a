"""Complaints' tests: citizens filing from their phone or from anywhere, and the desk that answers them."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx

from tests.support import Actor, World

TRACKING = "Ecard-Tracking-Code"


def about_venue(
    merchant_id: str | None = None, text: str = "图书馆闸机不认电子社保卡, 工作人员也不肯人工核验"
) -> dict[str, Any]:
    body: dict[str, Any] = {"category": "card_refused", "text": text}
    if merchant_id is not None:
        body["merchant_id"] = merchant_id
    return body


async def file_from(world: World, device: Actor, body: dict[str, Any]) -> httpx.Response:
    return await world.signed(device, "POST", "/v1/complaints", body)


async def read_with_code(client: httpx.AsyncClient, complaint_id: str, code: str) -> httpx.Response:
    return await client.get(f"/v1/complaints/{complaint_id}", headers={TRACKING: code})


@contextlib.asynccontextmanager
async def from_address(world: World, address: str) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of the service that it sees as coming from `address`."""
    transport = httpx.ASGITransport(app=world.app, client=(address, 40000))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver.local") as client:
        yield client


async def audit_actions(world: World, subject: str) -> list[str]:
    rows = await world.app.state.pool.fetch(
        "SELECT action FROM audit_log WHERE subject = $1 ORDER BY entry_id", subject
    )
    return [row["action"] for row in rows]
