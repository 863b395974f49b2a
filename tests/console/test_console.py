"""The operators' console in a real browser against a live installation: login with TOTP, session cookie and
logout, CSRF, cardholder search with audited reveals, card status, two-person approval of a disbursement batch
(by keyboard), risk events, complaints and the depth chart."""

from __future__ import annotations

import asyncpg
import httpx
from playwright.async_api import Browser, expect

from tests.browser import needs_chromium
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
        await desk.page.click("button[type=submit]")
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
        # the login form has its own token too
        login = await http.post("/console/login", data={"username": "x", "password": "y", "totp": "1"})
        assert login.status_code == 403
        await desk.close()
