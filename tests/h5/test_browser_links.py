"""The citizen pages in Chromium for what needs a peer: the 渝快码 link against the 渝快办 stand-in, and an allowance
paid through a disbursement batch by the stand-in bank, as the holder's history page shows it."""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, Request, expect

from tests.browser import needs_chromium, screenshot, serious_violations
from tests.h5.test_browser import bank, browser, opened, qr_text, visit, world
from tests.live import LiveEcard, LiveWorld
from tests.standins import StandinBank, StandinYukuai
from tests.support import problem

pytestmark = needs_chromium
__all__ = ["bank", "browser", "world"]  # the fixtures, used by name

JOINT = "wl-030"  # an item a 渝快码 is checked for, as in tests/federation
ALLOWANCE = "wl-022"  # 城乡居民最低生活保障金发放: a disbursement item
CHECK = "wl-010"
PAID_DEADLINE_S = 60.0


@pytest.fixture(scope="module")
def yukuai_live(
    service_urls: tuple[str, str], bank: StandinBank, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LiveEcard, StandinYukuai]]:
    """One installation wired to the 渝快办 stand-in (which trusts its request keys) and to the stand-in bank."""
    folder: Path = tmp_path_factory.mktemp("links")
    server = asyncio.run(
        LiveEcard.create(
            "cq",
            service_urls,
            folder,
            name="h5_links",
            ECARD_BANK_URL=bank.base,
            ECARD_CALLBACK_ALLOW_LOOPBACK="1",
            ECARD_DISBURSEMENT_POLL_S="0.1",
        )
    )
    yukuai = StandinYukuai(folder, f"{server.base}/v1/issuer/request-keys")
    server.env["ECARD_YUKUAI_URL"] = yukuai.base
    server.start()
    try:
        yukuai.start()
        yield server, yukuai
    finally:
        yukuai.kill()
        server.stop()


@pytest.fixture(scope="module")
def live(yukuai_live: tuple[LiveEcard, StandinYukuai]) -> LiveEcard:
    return yukuai_live[0]


@pytest.fixture(scope="module")
def yukuai(yukuai_live: tuple[LiveEcard, StandinYukuai]) -> StandinYukuai:
    return yukuai_live[1]


async def _platform(yukuai: StandinYukuai, path: str, body: dict[str, str] | None = None) -> str:
    """A call to the stand-in's test surface (docs/yukuai-protocol.md), answered 201; its one interesting field."""
    async with httpx.AsyncClient(base_url=yukuai.base, timeout=10.0) as platform:
        answer = await platform.post(path, json=body)
    assert answer.status_code == 201, answer.text
    made = answer.json()
    return str(made.get("link_token") or made.get("code"))


async def _account(yukuai: StandinYukuai, name: str, id_number: str) -> str:
    """A real-name 渝快办 account of the holder."""
    account_id = f"ykb-{secrets.token_hex(6)}"
    async with httpx.AsyncClient(base_url=yukuai.base, timeout=10.0) as platform:
        made = await platform.post(
            "/test/accounts", json={"account_id": account_id, "name": name, "id_number": id_number}
        )
    assert made.status_code == 201, made.text
    return account_id


async def test_the_yukuai_link_is_made_on_the_page_with_consent_and_refused_without(
    world: LiveWorld, browser: Browser, yukuai: StandinYukuai
) -> None:
    holder = await opened(world, browser, "张小三")
    library = await world.merchant([JOINT], name="武隆区图书馆")
    account_id = await _account(yukuai, holder.name, holder.id_number)
    page = await visit(holder, "/h5/yukuai")
    link_form = page.locator("form[data-method=PUT]")
    consent = page.get_by_label("我同意渝快办账户代表我的电子社保卡办理业务")
    link = page.get_by_role("button", name="关联", exact=True)
    sent: list[str] = []

    def linking(request: Request) -> None:
        if "/links/yukuai" in request.url:
            sent.append(request.method)

    page.on("request", linking)

    # without the tick the browser itself holds the form back: nothing is sent
    await page.fill("#account_id", account_id)
    await page.fill("#link_token", await _platform(yukuai, f"/test/accounts/{account_id}/link-tokens"))
    await link.click()
    assert await consent.evaluate("(box) => box.validity.valueMissing") is True
    # a browser that skips the check: the API refuses it and the page says so with the API's code
    await link_form.evaluate("(form) => { form.noValidate = true; }")
    await link.click()

    await expect(page.locator("#status")).to_contain_text("consent_required")
    assert sent == ["PUT"]  # one request: the held-back submit sent none
    ykm = await _platform(yukuai, f"/test/accounts/{account_id}/codes")
    assert problem(await world.verify(library, ykm, JOINT)) == (403, "card_not_linked")

    await page.fill("#link_token", await _platform(yukuai, f"/test/accounts/{account_id}/link-tokens"))
    await consent.check()
    await link.click()

    await expect(page.locator("#status")).to_have_text("已关联渝快办账户。")
    assert await serious_violations(page) == []
    await screenshot(page, "h5-yukuai-linked")
    accepted = await world.verify(library, await _platform(yukuai, f"/test/accounts/{account_id}/codes"), JOINT)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["card"]["name_masked"] == "张*三"


async def test_an_allowance_paid_by_a_batch_and_a_check_by_a_merchant_are_on_the_history_page(
    world: LiveWorld, browser: Browser, bank: StandinBank
) -> None:
    holder = await opened(world, browser, "陈七")
    hospital = await world.merchant([CHECK], name="武隆区人民医院")
    checked = await world.verify(hospital, qr_text(await holder.page.get_attribute("#qr", "src") or ""), CHECK)
    assert checked.status_code == 200, checked.text
    payer = await world.merchant([ALLOWANCE], name="武隆区民政局")
    await bank.fund(payer.ids["merchant_id"], 100_000)
    row = {
        "out_row_no": f"R{random.randint(0, 10**12)}",
        "id_number": holder.id_number,
        "name": holder.name,
        "amount_fen": 35_000,
        "memo": "2026年11月低保金",
    }
    body = {
        "out_batch_no": f"B{random.randint(0, 10**12)}",
        "item_code": ALLOWANCE,
        "description": "2026年11月城乡低保",
        "notify_url": "http://127.0.0.1:9/notify",
        "rows": [row],
    }
    made = await world.signed(payer, "POST", "/v1/disbursements", body)
    assert made.status_code == 201, made.text
    batch_id = made.json()["batch_id"]
    approved = await world.admin("POST", f"/v1/admin/disbursements/{batch_id}/approve", {"reason": "核对无误"})
    assert approved.status_code == 200, approved.text

    deadline = time.monotonic() + PAID_DEADLINE_S
    while (seen := await world.signed(payer, "GET", f"/v1/disbursements/{batch_id}")).json()["status"] != "completed":
        assert seen.json()["status"] not in {"failed", "cancelled"}, seen.text
        assert time.monotonic() < deadline, f"batch still {seen.json()['status']}"
        await asyncio.sleep(0.05)
    assert seen.json()["paid_fen"] == 35_000

    page = await visit(holder, "/h5/history", "h5-history-disbursed")
    paid = page.locator("tbody tr", has_text="武隆区民政局")
    await expect(paid).to_contain_text("到账 350.00 元")
    await expect(page.locator("tbody tr", has_text="武隆区人民医院")).to_contain_text("查验")
    assert await bank.balance(holder.card_id) == 35_000
