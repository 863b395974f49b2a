"""The operators' console in a real browser against a live installation: login with TOTP, session cookie and
logout, CSRF, cardholder search with audited reveals, card status, two-person approval of a disbursement batch
(by keyboard), risk events, complaints and the depth chart."""

from __future__ import annotations

import random

import asyncpg
import httpx
from playwright.async_api import Browser, expect

from tests.browser import needs_chromium
from tests.console.conftest import DUAL_FEN
from tests.console.desk import Desk
from tests.live import LiveEcard

pytestmark = needs_chromium

ALLOWANCE = "wl-022"  # 城乡居民最低生活保障金发放: a disbursement item


async def test_login_needs_the_right_totp_sets_a_strict_cookie_and_logout_ends_the_session(
    live: LiveEcard, browser: Browser
) -> None:
    async with httpx.AsyncClient(base_url=live.base, timeout=30) as http:
        world = live.world(http)
        desk = await Desk.open(world, browser)
        password, _ = await world.new_operator("console_wrong")
        answer = await desk.page.goto("/console/login")
        assert answer is not None
        assert answer.ok
        await desk.check("login")
        await desk.page.fill("#username", "console_wrong")
        await desk.page.fill("#password", password)
        await desk.page.fill("#totp", "000000")
        async with desk.page.expect_response(lambda r: r.request.method == "POST") as posted:
            await desk.page.click("button[type=submit]")
        assert (await posted.value).status == 401
        await expect(desk.page.locator("#login-error")).to_contain_text("用户名、密码或动态码不正确")
        await desk.check("login-refused")
        # nobody's username gets the very same words
        await desk.page.fill("#username", "nobody_here")
        await desk.page.fill("#password", "whatever-password")
        await desk.page.fill("#totp", "123456")
        await desk.page.click("button[type=submit]")
        await expect(desk.page.locator("#login-error")).to_contain_text("用户名、密码或动态码不正确")

        unauthenticated = await http.get("/console/", follow_redirects=False)
        assert unauthenticated.status_code == 303
        assert unauthenticated.headers["location"] == "/console/login"

        await desk.log_in()
        await desk.check("dashboard")
        [cookie] = [c for c in await desk.context.cookies() if c["name"] == "ecard_console"]
        assert cookie["httpOnly"] is True
        assert cookie["sameSite"] == "Strict"
        assert cookie["path"] == "/console/"
        token = cookie["value"]
        shown = await http.get("/console/", headers={"Cookie": f"ecard_console={token}"}, follow_redirects=False)
        assert shown.status_code == 200
        assert "frame-ancestors 'none'" in shown.headers["content-security-policy"]

        await desk.page.click("text=退出登录")
        await desk.page.wait_for_url("**/console/login")
        await desk.page.goto("/console/cardholders")
        await desk.page.wait_for_url("**/console/login")
        replayed = await http.get("/console/", headers={"Cookie": f"ecard_console={token}"}, follow_redirects=False)
        assert replayed.status_code == 303
        assert replayed.headers["location"] == "/console/login"
        await desk.close()


async def test_an_operator_finds_a_card_reveals_the_number_audited_and_suspends_and_reactivates_it(
    live: LiveEcard, browser: Browser
) -> None:
    async with httpx.AsyncClient(base_url=live.base, timeout=30) as http:
        world = live.world(http)
        phone = await world.device("王小明")
        number, card_id = phone.ids["id_number"], phone.ids["card_id"]
        desk = await Desk.open(world, browser)
        await desk.log_in()
        await desk.page.click("text=持卡人 Cardholders")
        await desk.check("search")
        await desk.page.fill("#id_number", number)
        await desk.page.click("button:has-text('查找')")
        masked = f"{number[:6]}********{number[-4:]}"
        await expect(desk.page.locator("#id-number")).to_have_text(masked)
        await expect(desk.page.locator("#name")).to_have_text("王*明")
        await desk.check("search-result")
        await desk.page.click(f"a:has-text('{card_id}')")
        await expect(desk.page.locator("#id-number")).to_have_text(masked)
        await desk.check("card")

        await desk.page.click("#reveal")
        await expect(desk.page.locator("#id-number")).to_have_text(number)
        await desk.check("card-revealed")
        connection = await asyncpg.connect(live.env["ECARD_DATABASE_URL"])
        try:
            revealed = await connection.fetch(
                "SELECT actor, subject, at FROM audit_log WHERE action = 'cardholder.revealed'"
            )
        finally:
            await connection.close()
        assert [(row["actor"].startswith("op_"), row["subject"]) for row in revealed] == [(True, card_id)]

        await desk.page.select_option("#new-status", "suspended")
        await desk.page.fill("#reason", "持卡人来电挂失")
        await desk.page.click("#change-status")
        await expect(desk.page.locator("#status")).to_have_text("suspended")
        await expect(desk.page.locator("[role=status]")).to_contain_text("卡状态已更改")
        found = await world.admin("POST", "/v1/admin/cardholders/search", {"id_number": number})
        assert [card["status"] for card in found.json()["cards"]] == ["suspended"]
        await desk.page.select_option("#new-status", "active")
        await desk.page.click("#change-status")
        await expect(desk.page.locator("#status")).to_have_text("active")
        found = await world.admin("POST", "/v1/admin/cardholders/search", {"id_number": number})
        assert [card["status"] for card in found.json()["cards"]] == ["active"]

        desk.never_in_urls(number)
        desk.never_in_urls(number[-4:] + "&")
        await desk.close()


async def test_a_post_without_the_right_csrf_field_is_refused_and_changes_nothing(
    live: LiveEcard, browser: Browser
) -> None:
    async with httpx.AsyncClient(base_url=live.base, timeout=30) as http:
        world = live.world(http)
        phone = await world.device()
        card_id = phone.ids["card_id"]
        desk = await Desk.open(world, browser)
        await desk.log_in()
        cookie = {"Cookie": f"ecard_console={await desk.cookie()}"}
        target = f"/console/cards/{card_id}/status"
        # as another site's form would post it: the browser would add the cookie, but cannot know the field
        for form in ({"status": "cancelled"}, {"status": "cancelled", "csrf": "forged"}):
            refused = await http.post(target, data=form, headers=cookie, follow_redirects=False)
            assert refused.status_code == 403
            assert "forbidden" in refused.text
            assert "frame-ancestors 'none'" in refused.headers["content-security-policy"]
        found = await world.admin("POST", "/v1/admin/cardholders/search", {"id_number": phone.ids["id_number"]})
        assert [card["status"] for card in found.json()["cards"]] == ["active"]
        # the same form with the page's own field works
        await desk.page.goto(f"/console/cards/{card_id}")
        field = await desk.page.locator("form[action$='/status'] input[name=csrf]").get_attribute("value")
        assert field
        done = await http.post(
            target, data={"status": "suspended", "csrf": field}, headers=cookie, follow_redirects=False
        )
        assert done.status_code == 303
        # a value the API's model does not take is a 400 page naming the field, and changes nothing
        bogus = await http.post(
            f"/console/cards/{card_id}/status",
            data={"status": "lost-forever", "csrf": field},
            headers=cookie,
            follow_redirects=False,
        )
        assert bogus.status_code == 400
        assert "(status)" in bogus.text
        assert "lost-forever" not in bogus.text
        # the login form has its own token too
        login = await http.post("/console/login", data={"username": "x", "password": "y", "totp": "1"})
        assert login.status_code == 403
        await desk.close()


async def tab_to(desk: Desk, element_id: str) -> None:
    """Press Tab until the element has the focus, as a keyboard user moves through the page."""
    for _ in range(60):
        await desk.page.keyboard.press("Tab")
        if await desk.page.evaluate("document.activeElement && document.activeElement.id") == element_id:
            return
    raise AssertionError(f"#{element_id} never took the focus")


async def test_a_batch_above_the_threshold_needs_two_different_operators_approving_by_keyboard(
    live: LiveEcard, browser: Browser
) -> None:
    async with httpx.AsyncClient(base_url=live.base, timeout=30) as http:
        world = live.world(http)
        office = await world.merchant([ALLOWANCE], name="武隆区民政局")
        people = [await world.cardholder(name) for name in ("李四", "王五")]
        rows = [
            {
                "out_row_no": f"R{n}",
                "id_number": person["id_number"],
                "name": person["name"],
                "amount_fen": DUAL_FEN,
                "memo": "2026年11月低保金",
            }
            for n, person in enumerate(people)
        ]
        made = await world.signed(
            office,
            "POST",
            "/v1/disbursements",
            {
                "out_batch_no": f"B{random.randint(0, 10**9)}",
                "item_code": ALLOWANCE,
                "description": "2026年11月城乡低保",
                "notify_url": "https://mz.wulong.gov.cn/ecard/notify",
                "rows": rows,
            },
        )
        assert made.status_code in {200, 201}, made.text
        batch_id = made.json()["batch_id"]

        first = await Desk.open(world, browser)
        await first.log_in()
        await first.page.goto("/console/disbursements?status=awaiting_approval")
        await first.check("batches")
        await first.page.goto(f"/console/disbursements/{batch_id}")
        await expect(first.page.locator("#dual")).to_be_visible()
        await expect(first.page.locator("#approvals")).to_have_text("0/2")
        await first.check("batch")
        # keyboard only: Tab to the note, type it, Tab to the button, Enter
        await tab_to(first, "approve-reason")
        await first.page.keyboard.type("核对无误")
        await tab_to(first, "approve")
        await first.page.keyboard.press("Enter")
        await expect(first.page.locator("[role=status]")).to_contain_text("已记录您的批准")
        await expect(first.page.locator("#approvals")).to_have_text("1/2")
        await expect(first.page.locator("#approvers")).to_contain_text("您 you")
        await first.check("batch-approved-once")
        # the same operator again is refused, and says why
        await tab_to(first, "approve")
        await first.page.keyboard.press("Enter")
        await expect(first.page.locator("#refusal-code")).to_have_text("approval_duplicate")
        await expect(first.page.locator("[role=alert]")).to_contain_text("另一位操作员")
        await first.check("batch-approval-duplicate")
        viewed = await world.admin("GET", f"/v1/disbursements/{batch_id}")
        assert viewed.json()["status"] == "awaiting_approval"
        assert viewed.json()["approvals"] == {"needed": 2, "given": 1}

        second = await Desk.open(world, browser)
        await second.log_in()
        await second.page.goto(f"/console/disbursements/{batch_id}")
        await second.page.click("#approve")
        await expect(second.page.locator("#approvals")).to_have_text("2/2")
        viewed = await world.admin("GET", f"/v1/disbursements/{batch_id}")
        assert viewed.json()["status"] != "awaiting_approval"
        assert viewed.json()["approvals"] == {"needed": 2, "given": 2}
        await first.close()
        await second.close()


async def test_risk_events_complaints_and_the_depth_chart(live: LiveEcard, browser: Browser) -> None:
    async with httpx.AsyncClient(base_url=live.base, timeout=30) as http:
        world = live.world(http)
        library = await world.merchant(["wl-030"])
        phone = await world.device()
        code = await world.code(phone)
        assert (await world.verify(library, code)).status_code == 200
        assert (await world.verify(library, code)).status_code == 409
        filed = await http.post(
            "/v1/complaints", json={"category": "service", "text": "窗口工作人员态度不好", "contact": "13800000000"}
        )
        assert filed.status_code == 201, filed.text
        complaint_id = filed.json()["complaint_id"]

        desk = await Desk.open(world, browser)
        await desk.log_in()
        await desk.page.goto("/console/risk")
        row = desk.page.locator("#events tr", has_text=phone.ids["card_id"])
        await expect(row).to_have_count(1)
        await desk.check("risk")
        await row.locator("select[name=outcome]").select_option("confirmed")
        await row.locator("input[name=note]").fill("同一动态码被重复出示")
        await row.locator("button").click()
        await expect(desk.page.locator("[role=status]")).to_contain_text("风险事件已处理")
        events = await world.admin("GET", f"/v1/admin/risk/events?card_id={phone.ids['card_id']}")
        assert {event["outcome"] for event in events.json()["items"]} == {"confirmed"}

        await desk.page.goto("/console/complaints")
        await desk.check("complaints")
        await desk.page.click(f"a:has-text('{complaint_id}')")
        await expect(desk.page.locator("#complaint-text")).to_have_text("窗口工作人员态度不好")
        await desk.check("complaint")
        await desk.page.fill("#reply-text", "已核实并对工作人员进行了批评教育。")
        await desk.page.select_option("#reply-status", "resolved")
        await desk.page.click("#send-reply")
        await expect(desk.page.locator("#complaint-status")).to_have_text("resolved")
        case = await world.admin("GET", f"/v1/admin/complaints/{complaint_id}")
        assert case.json()["status"] == "resolved"
        assert [reply["text"] for reply in case.json()["replies"]] == ["已核实并对工作人员进行了批评教育。"]

        scenes = await world.admin("PUT", "/v1/admin/depth/scenes/wl-030", {"district": "wulong", "scenes": 4})
        assert scenes.status_code == 200, scenes.text
        await desk.page.goto("/console/depth")
        await expect(desk.page.locator("svg#depth-functions g.bar")).to_have_count(3)
        await expect(desk.page.locator("svg#depth-districts g.bar")).to_have_count(1)
        await expect(desk.page.locator("svg#depth-districts g.bar title")).to_contain_text("wulong")
        await expect(desk.page.locator("svg#depth-functions title").first).to_contain_text("应用深度")
        await desk.check("depth")
        await desk.close()


async def test_an_operator_edits_a_catalog_item_and_sees_the_new_version(live: LiveEcard, browser: Browser) -> None:
    async with httpx.AsyncClient(base_url=live.base, timeout=30) as http:
        world = live.world(http)
        desk = await Desk.open(world, browser)
        await desk.log_in()
        await desk.page.click("text=事项清单 Catalog")
        await desk.check("catalog")
        await desk.page.click("a:has-text('wl-030')")
        before = int(await desk.page.inner_text("#catalog-version"))
        await desk.check("catalog-item")
        await desk.page.fill("#description", "武隆区图书馆持电子社保卡借阅")
        await desk.page.click("#save-item")
        await expect(desk.page.locator("[role=status]")).to_contain_text("新版本")
        await expect(desk.page.locator("#catalog-version")).to_have_text(str(before + 1))
        await expect(desk.page.locator("#history tr", has_text="武隆区图书馆持电子社保卡借阅")).to_have_count(1)
        item = await http.get("/v1/catalog/items/wl-030")
        assert item.json()["description"] == "武隆区图书馆持电子社保卡借阅"
        await desk.close()


async def test_an_operator_disables_a_terminal_and_its_key_stops_working(live: LiveEcard, browser: Browser) -> None:
    async with httpx.AsyncClient(base_url=live.base, timeout=30) as http:
        world = live.world(http)
        library = await world.merchant(["wl-030"], name="武隆区图书馆")
        desk_terminal = await world.terminal(library, "T-01")
        phone = await world.device()
        desk = await Desk.open(world, browser)
        await desk.log_in()
        await desk.page.click("text=商户 Merchants")
        await desk.check("merchants")
        await desk.page.click(f"a[href='/console/merchants/{library.ids['merchant_id']}']")
        await expect(desk.page.locator("#merchant-items")).to_have_text("wl-030")
        await desk.check("merchant")
        await desk.page.click("#terminals button:has-text('T-01')")
        await expect(desk.page.locator("[role=status]")).to_contain_text("终端状态已更改")
        await expect(desk.page.locator("#terminals tr", has_text="T-01")).to_contain_text("disabled")
        refused = await world.verify(desk_terminal, await world.code(phone))
        assert refused.status_code == 403
        assert refused.json()["code"] == "client_disabled"
        await desk.close()
