"""The citizen pages in a real browser (Debian's Chromium), against a live server and the stand-in bank: a channel's
ticket opens them, the page enrols its own key and shows a QR a merchant verifies, and the holder pays a bill,
reports the card lost and files a complaint, by keyboard where the flow asks for it."""

from __future__ import annotations

import asyncio
import base64
import io
import random
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import zxingcpp
from PIL import Image
from playwright.async_api import Browser, ConsoleMessage, Page, Request, expect

from tests.browser import browser, needs_chromium, screenshot, serious_violations
from tests.live import LiveEcard, LiveWorld
from tests.portal.oidc import PortalClient, portal_site
from tests.standins import StandinBank

pytestmark = needs_chromium
__all__ = ["browser", "portal_site"]  # the fixtures, used by name

PIN = "246813"
WATER = "wl-043"
# short-lived codes, so that the page's own refresh is seen within a test
CODE_TTL_S = 8
QR_READY = "() => (document.getElementById('qr') || {src: ''}).src.startsWith('data:image/png')"


@pytest.fixture(scope="module")
def bank(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandinBank]:
    with StandinBank.running(tmp_path_factory.mktemp("bank")) as standin:
        yield standin


@pytest.fixture(scope="module")
def live(
    service_urls: tuple[str, str], bank: StandinBank, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveEcard]:
    """One installation for the module's tests (each test makes its own people)."""
    folder: Path = tmp_path_factory.mktemp("live")
    server = asyncio.run(
        LiveEcard.create(
            "cq",
            service_urls,
            folder,
            name="h5_browser",
            ECARD_BANK_URL=bank.base,
            ECARD_CODE_TTL_S=str(CODE_TTL_S),
            ECARD_CALLBACK_ALLOW_LOOPBACK="1",
        )
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def world(live: LiveEcard) -> AsyncIterator[LiveWorld]:
    async with httpx.AsyncClient(base_url=live.base, timeout=30) as http:
        yield live.world(http)


@dataclass
class Holder:
    """A person with a card, the page a channel opened for them, and what the browser did meanwhile."""

    name: str
    id_number: str
    card_id: str
    page: Page
    base: str
    requested: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)


async def opened(world: LiveWorld, browser: Browser, name: str = "赵六") -> Holder:
    """A bank app's ticket for a registered person, opened in the browser: the page enrols itself and shows a QR."""
    made = await world.cardholder(name)
    channel = await world.channel()
    answer = await world.signed(
        channel, "POST", "/v1/enrolments/tickets", {"id_number": made["id_number"], "name": name}
    )
    assert answer.status_code == 201, answer.text
    page = await browser.new_page()
    holder = Holder(name, made["id_number"], made["card_id"], page, world.live.base)

    def requested(request: Request) -> None:
        holder.requested.append(request.url)

    def logged(message: ConsoleMessage) -> None:
        holder.console.append(message.text)

    page.on("request", requested)
    page.on("console", logged)
    await page.goto(answer.json()["h5_url"])
    await page.wait_for_function(QR_READY, timeout=15_000)
    assert page.url == f"{world.live.base}/h5/"
    return holder


async def visit(holder: Holder, path: str, shot: str | None = None) -> Page:
    """A page of the holder's, checked as every page is: CSP, no serious accessibility finding, a screenshot."""
    page = holder.page
    answer = await page.goto(holder.base + path)
    assert answer is not None
    assert answer.ok
    policy = (await answer.all_headers())["content-security-policy"]
    assert "script-src 'nonce-" in policy
    assert "frame-ancestors 'self'" in policy
    assert await page.get_attribute("html", "lang") == "zh-CN"
    assert await serious_violations(page) == [], path
    await screenshot(page, shot or f"h5-{path.removeprefix('/h5/').replace('/', '-') or 'home'}")
    return page


def nothing_personal_requested(holder: Holder) -> None:
    for url in holder.requested:
        assert holder.id_number not in url
        assert holder.name not in url
        assert httpx.URL(url).fragment == ""  # the ticket never travels in a request
    assert not [line for line in holder.console if "Content Security Policy" in line], holder.console


def qr_text(source: str) -> str:
    assert source.startswith("data:image/png;base64,")
    found = zxingcpp.read_barcode(Image.open(io.BytesIO(base64.b64decode(source.split(",", 1)[1]))))
    assert found is not None
    return str(found.text)


async def tab_to(page: Page, selector: str, presses: int = 60) -> None:
    """Tab until the element has the focus, as a keyboard user would."""
    for _ in range(presses):
        await page.keyboard.press("Tab")
        if await page.evaluate("(s) => document.activeElement.matches(s)", selector):
            return
    pytest.fail(f"{selector} is not reachable by Tab")


async def test_the_page_enrols_itself_and_shows_a_code_a_merchant_verifies_and_it_refreshes(
    world: LiveWorld, browser: Browser
) -> None:
    holder = await opened(world, browser, "赵六")
    page = holder.page
    await screenshot(page, "h5-home-code")
    assert await serious_violations(page) == []
    first = await page.get_attribute("#qr", "src")
    assert first is not None

    merchant = await world.merchant(["wl-010"], name="武隆区公安分局")
    checked = await world.verify(merchant, qr_text(first), item_code="wl-010")

    assert checked.status_code == 200, checked.text
    assert checked.json()["card"]["name"] == "赵六"
    await page.wait_for_function(f"() => document.getElementById('qr').src !== {first!r}", timeout=CODE_TTL_S * 1000)
    again = await world.verify(merchant, qr_text(await page.get_attribute("#qr", "src") or ""), item_code="wl-010")
    assert again.status_code == 200, again.text
    await page.click("#show-numeric")
    await expect(page.locator("#numeric")).to_have_text(re.compile(r"^[0-9 ]{20,}$"), timeout=10_000)

    key: list[Any] = await page.evaluate(
        """() => new Promise((resolve, reject) => {
          const opening = indexedDB.open('ecard-h5');
          opening.onerror = () => reject(opening.error);
          opening.onsuccess = () => {
            const read = opening.result.transaction('device').objectStore('device').get('current');
            read.onsuccess = () => {
              const k = read.result.privateKey;
              resolve([k instanceof CryptoKey, k.extractable, k.type, k.algorithm.name, k.algorithm.namedCurve]);
            };
          };
        })"""
    )
    assert key == [True, False, "private", "ECDSA", "P-256"]
    history = await visit(holder, "/h5/history", "h5-history-checked")
    await expect(history.locator("tbody tr").first).to_contain_text("武隆区公安分局")
    nothing_personal_requested(holder)


async def test_the_home_page_is_small_before_the_qr(world: LiveWorld, browser: Browser) -> None:
    holder = await opened(world, browser)
    page = holder.page
    sizes: list[int] = []

    async def counted(request: Request) -> None:
        answer = await request.response()
        if answer is not None:
            sizes.append(len(await answer.body()))

    page.on("requestfinished", counted)
    await page.reload()
    await page.wait_for_function(QR_READY, timeout=15_000)

    assert 0 < sum(sizes) < 100 * 1024


async def test_a_water_bill_is_paid_with_the_pin_by_keyboard_alone(
    world: LiveWorld, browser: Browser, bank: StandinBank
) -> None:
    holder = await opened(world, browser, "钱七")
    await bank.credit(holder.card_id, 10_000)
    page = await visit(holder, "/h5/pin")
    await tab_to(page, "#new_pin")
    await page.keyboard.type(PIN)
    await page.keyboard.press("Enter")
    await expect(page.locator("#status")).to_have_text("支付密码已设置。")

    merchant = await world.merchant([WATER], name="武隆区自来水公司")
    body = {
        "out_bill_no": f"W{random.randint(0, 10**12)}",
        "item_code": WATER,
        "amount_fen": 4_250,
        "description": "2026年10月水费",
        "notify_url": "http://127.0.0.1:9/notify",
        "expires_in_s": 3600,
    }
    bill = await world.signed(merchant, "POST", "/v1/bills", body)
    assert bill.status_code == 201, bill.text

    page = await visit(holder, "/h5/pay")
    await tab_to(page, "#bill")
    await page.keyboard.type(bill.json()["pull_up_url"])
    await page.keyboard.press("Enter")
    await expect(page.locator("#bill-amount")).to_have_text("42.50 元")
    await expect(page.locator("#bill-merchant")).to_have_text("武隆区自来水公司")
    assert await serious_violations(page) == []
    await screenshot(page, "h5-pay-bill")
    pin = page.locator("#pin")
    assert await pin.get_attribute("inputmode") == "numeric"
    assert await pin.get_attribute("autocomplete") == "off"
    assert await pin.get_attribute("type") == "password"
    await tab_to(page, "#pin")
    await page.keyboard.type(PIN)
    await page.keyboard.press("Enter")

    await expect(page.locator("#bill-status")).to_have_text("已支付", timeout=15_000)
    await screenshot(page, "h5-pay-paid")
    paid = await world.signed(merchant, "GET", f"/v1/bills/{bill.json()['bill_id']}")
    assert paid.json()["status"] == "paid"
    assert await bank.balance(holder.card_id) == 10_000 - 4_250
    nothing_personal_requested(holder)


async def test_a_wrong_pin_is_told_and_nothing_is_paid(world: LiveWorld, browser: Browser) -> None:
    holder = await opened(world, browser)
    page = await visit(holder, "/h5/pin")
    await page.fill("#new_pin", PIN)
    await page.click("text=保存")
    await expect(page.locator("#status")).to_have_text("支付密码已设置。")
    merchant = await world.merchant([WATER], name="武隆区自来水公司")
    body = {
        "out_bill_no": f"W{random.randint(0, 10**12)}",
        "item_code": WATER,
        "amount_fen": 100,
        "description": "水费",
        "notify_url": "http://127.0.0.1:9/notify",
        "expires_in_s": 3600,
    }
    bill = (await world.signed(merchant, "POST", "/v1/bills", body)).json()

    page = await visit(holder, f"/h5/pay?bill={bill['bill_id']}", "h5-pay-by-id")
    await page.fill("#pin", "999999")
    await page.click("button[type=submit]")

    await expect(page.locator("#status")).to_have_text("支付密码不正确。")
    assert (await world.signed(merchant, "GET", f"/v1/bills/{bill['bill_id']}")).json()["status"] == "pending"
    notices = await visit(holder, "/h5/notices", "h5-notices-pin-set")
    await expect(notices.locator("main li").first).to_contain_text("支付密码已设置")


async def test_the_card_is_reported_lost_after_a_confirmation(world: LiveWorld, browser: Browser) -> None:
    holder = await opened(world, browser, "孙八")
    page = await visit(holder, "/h5/lost")
    await page.click("#start-lost")
    await expect(page.locator("#confirm-heading")).to_be_visible()
    assert await serious_violations(page) == []
    await screenshot(page, "h5-lost-confirm")
    found = await world.admin("POST", "/v1/admin/cardholders/search", {"id_number": holder.id_number})
    assert found.json()["cards"][0]["status"] == "active"  # nothing happens before the confirmation

    await page.click("#confirm-lost")

    await expect(page.locator("#status")).to_have_text("已挂失，电子社保卡已停用。")
    found = await world.admin("POST", "/v1/admin/cardholders/search", {"id_number": holder.id_number})
    assert found.json()["cards"][0]["status"] == "suspended"
    await page.goto(f"{holder.base}/h5/")
    await expect(page.locator("#status")).to_have_text("电子社保卡已挂失或暂停使用。")
    nothing_personal_requested(holder)


async def test_a_complaint_gets_a_tracking_code_that_reads_it_back(world: LiveWorld, browser: Browser) -> None:
    holder = await opened(world, browser)
    page = await visit(holder, "/h5/complaints")
    await page.select_option("#category", "card_refused")
    await page.fill("#text", "医院窗口不认电子社保卡")
    await page.click("text=提交投诉")

    await expect(page.locator("[data-field=tracking_code]")).not_to_be_empty()
    await screenshot(page, "h5-complaint-filed")
    complaint_id = await page.inner_text("[data-field=complaint_id]")
    tracking = await page.inner_text("[data-field=tracking_code]")
    read = await world.client.get(f"/v1/complaints/{complaint_id}", headers={"Ecard-Tracking-Code": tracking})
    assert read.status_code == 200, read.text
    assert read.json()["status"] == "received"
    await page.reload()
    assert tracking not in await page.content()  # shown once
    assert complaint_id in await page.inner_text("main")


async def test_large_text_mode_enlarges_the_page_and_is_remembered(world: LiveWorld, browser: Browser) -> None:
    holder = await opened(world, browser)
    page = holder.page
    size = "() => parseFloat(getComputedStyle(document.body).fontSize)"
    before = await page.evaluate(size)

    await page.click("#large-text")

    assert await page.get_attribute("#large-text", "aria-pressed") == "true"
    assert await page.evaluate(size) >= before * 1.4
    await screenshot(page, "h5-home-large-text")
    await page.goto(f"{holder.base}/h5/history")
    assert await page.evaluate(size) >= before * 1.4


async def test_every_page_passes_axe_and_carries_the_csp(world: LiveWorld, browser: Browser) -> None:
    holder = await opened(world, browser, "周九")
    for path in ("/h5/history", "/h5/pay", "/h5/pin", "/h5/logins", "/h5/yukuai", "/h5/family", "/h5/lost"):
        await visit(holder, path)
    await visit(holder, "/h5/complaints")
    await visit(holder, "/h5/notices")
    await visit(holder, "/h5/lost?confirm=true", "h5-lost-confirm-step")
    nothing_personal_requested(holder)


async def test_without_a_session_the_shell_asks_for_the_channel_and_shows_nothing(
    world: LiveWorld, browser: Browser
) -> None:
    page = await browser.new_page()
    answer = await page.goto(f"{world.live.base}/h5/history")
    assert answer is not None
    assert "script-src 'nonce-" in (await answer.all_headers())["content-security-policy"]

    await expect(page.locator("#no-key")).to_be_visible()
    assert await serious_violations(page) == []
    await screenshot(page, "h5-shell-no-key")


async def test_a_used_ticket_opens_nothing(world: LiveWorld, browser: Browser) -> None:
    made = await world.cardholder("吴十")
    channel = await world.channel()
    answer = await world.signed(
        channel, "POST", "/v1/enrolments/tickets", {"id_number": made["id_number"], "name": "吴十"}
    )
    url = answer.json()["h5_url"]
    first = await browser.new_page()
    await first.goto(url)
    await first.wait_for_function(QR_READY, timeout=15_000)

    second = await browser.new_page()
    await second.goto(url)

    await expect(second.locator("#status")).to_have_text("链接已使用或已过期，请回到渠道App重新打开。")
    assert "吴十" not in await second.content()


async def test_a_portal_login_is_approved_with_the_number_by_keyboard_alone(
    world: LiveWorld, browser: Browser, portal_site: tuple[str, list[dict[str, str]]]
) -> None:
    callback, seen = portal_site
    holder = await opened(world, browser, "郑十一")
    actor = await world.portal(["name"], [callback], ["wl-010"])
    portal = PortalClient(holder.base, actor, callback)
    try:
        await portal.discover()
        pushed = await portal.push(prompt="login", display="page")
        waiting = await browser.new_page()
        await waiting.goto(portal.authorize_url(pushed))
        number = await waiting.inner_text("#number")
        login_link = qr_text(await waiting.get_attribute("#qr", "src") or "")
        assert login_link.startswith("ecard://login?login_id=")

        page = await visit(holder, "/h5/logins")
        await tab_to(page, "#login")
        await page.keyboard.type(login_link)
        await page.keyboard.press("Enter")
        await expect(page.locator("main")).to_contain_text("请求用您的电子社保卡登录")
        assert await serious_violations(page) == []
        await screenshot(page, "h5-login-approve")
        await tab_to(page, "#number")
        await page.keyboard.type(number)
        await page.keyboard.press("Enter")

        await expect(page.locator("#status")).to_have_text("已同意登录。")
        await waiting.wait_for_url(f"{callback}?*", timeout=15_000)
        [received] = seen
        assert received["state"] == pushed.state
        assert "code" in received
        nothing_personal_requested(holder)
    finally:
        await portal.aclose()


async def test_a_family_member_is_added_and_the_link_ended_with_the_id_number_never_in_a_url(
    world: LiveWorld, browser: Browser
) -> None:
    holder = await opened(world, browser, "冯十二")
    member = await world.cardholder("冯小宝")
    page = await visit(holder, "/h5/family")
    await page.fill("#member_name", "冯小宝")
    await page.fill("#member_id_number", member["id_number"])
    await page.select_option("#relation", "child")
    await page.get_by_role("button", name="添加", exact=True).click()

    await expect(page.locator("main li")).to_contain_text("子女")
    assert await serious_violations(page) == []
    await screenshot(page, "h5-family-member")
    assert "冯小宝" not in await page.inner_text("main li")  # masked
    await page.click("main li button")
    await expect(page.locator("main")).to_contain_text("已解除")
    for url in holder.requested:
        assert member["id_number"] not in url
        assert "冯小宝" not in url
    nothing_personal_requested(holder)


async def test_logging_out_ends_the_session_until_the_holder_comes_back(world: LiveWorld, browser: Browser) -> None:
    holder = await opened(world, browser)
    page = holder.page

    await page.click("#logout")

    await expect(page.locator("#resume")).to_be_visible()
    assert await page.get_attribute("body", "data-page") == "shell"
    assert holder.card_id not in await page.content()
    assert await serious_violations(page) == []
    await screenshot(page, "h5-signed-out")
    await page.click("#resume")
    await page.wait_for_function(QR_READY, timeout=15_000)
    assert await page.get_attribute("body", "data-card") == holder.card_id
