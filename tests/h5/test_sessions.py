"""Page sessions: minted by a device-signed request, read by the pages; without one no page tells anything."""

from __future__ import annotations

import dataclasses

import httpx

from ecard.app import create_app
from ecard.config import Settings
from ecard.kit.clock import MovableClock
from tests.conftest import reset_database, running
from tests.support import World, p256_actor, problem

PAGES = ["/h5/", "/h5/history", "/h5/pay", "/h5/pin", "/h5/logins", "/h5/yukuai", "/h5/family", "/h5/lost"]
PAGES += ["/h5/complaints", "/h5/notices"]


async def test_a_device_signed_request_opens_a_page_session_in_a_strict_cookie(world: World) -> None:
    phone = await world.device("王小梅")

    answer = await world.signed(phone, "POST", "/h5/session")

    assert answer.status_code == 204, answer.text
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith("ecard_h5=")
    assert "HttpOnly" in cookie
    assert "samesite=strict" in cookie.lower()
    assert "Path=/h5/" in cookie
    assert "secure" not in cookie.lower().split("; ")  # plain http, as this test client speaks
    page = await world.client.get("/h5/history")
    assert page.status_code == 200
    assert 'data-page="history"' in page.text
    assert phone.ids["card_id"] in page.text


async def test_without_a_session_every_page_is_the_shell_with_no_personal_data(world: World) -> None:
    phone = await world.device("王小梅")
    await world.signed(phone, "POST", "/v1/complaints", {"category": "service", "text": "窗口无人"})

    for path in PAGES:
        for cookie in (None, "x" * 43, "y" * 500):
            world.client.cookies.clear()
            if cookie is not None:
                world.client.cookies.set("ecard_h5", cookie, path="/h5/")
            page = await world.client.get(path)
            assert page.status_code == 200, path
            assert 'data-page="shell"' in page.text, path
            assert phone.ids["card_id"] not in page.text
            assert phone.ids["device_id"] not in page.text
            assert "王小梅" not in page.text
            assert "script-src 'nonce-" in page.headers["content-security-policy"]
            assert page.headers["cache-control"] == "no-store"


async def test_a_session_ends_with_logout_and_with_its_device(world: World) -> None:
    phone = await world.device("王小梅")
    await world.signed(phone, "POST", "/h5/session")
    assert 'data-page="home"' in (await world.client.get("/h5/")).text

    assert (await world.client.post("/h5/logout")).status_code == 204
    assert 'data-page="shell"' in (await world.client.get("/h5/")).text

    await world.signed(phone, "POST", "/h5/session")
    channel = await world.channel()
    newer = await world.signed(
        channel,
        "POST",
        "/v1/enrolments/tickets",
        {"id_number": phone.ids["id_number"], "name": "王小梅"},
    )
    await world.client.post(
        "/v1/enrolments/ticketed", json={"ticket": newer.json()["ticket"], "device_public_key": p256_actor().jwk}
    )
    assert 'data-page="shell"' in (await world.client.get("/h5/")).text


async def test_only_devices_open_page_sessions(world: World) -> None:
    channel = await world.channel()

    assert problem(await world.signed(channel, "POST", "/h5/session")) == (403, "forbidden")
    assert problem(await world.client.post("/h5/session")) == (401, "signature_missing")


async def test_the_script_is_cached_long_and_not_sniffed(world: World) -> None:
    page = await world.client.get("/h5/")
    src = page.text.split('src="', 2)[-1].split('"', 1)[0]

    script = await world.client.get(src)

    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert "max-age=31536000" in script.headers["cache-control"]
    assert script.headers["x-content-type-options"] == "nosniff"


async def test_channel_origins_may_frame_the_pages_and_an_https_service_sets_secure_cookies(
    settings: Settings, clock: MovableClock
) -> None:
    configured = dataclasses.replace(
        settings, h5_frame_ancestors="'self' https://h5.bank.example", public_url="https://ecard.example"
    )
    assert configured.database_url
    await reset_database(configured.database_url)
    app = create_app(configured, clock=clock)
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with running(app), httpx.AsyncClient(transport=transport, base_url="http://testserver.local") as client:
        page = await client.get("/h5/")
        world = World(app, client, clock)
        phone = await world.device()
        opened = await world.signed(phone, "POST", "/h5/session")

    assert page.headers["content-security-policy"].endswith("frame-ancestors 'self' https://h5.bank.example")
    assert "x-frame-options" not in page.headers
    assert opened.status_code == 204, opened.text
    assert "secure" in opened.headers["set-cookie"].lower().split("; ")
