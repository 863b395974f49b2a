"""HTTP of the citizen pages (H5): the page session, the script, and the server-rendered pages.

The pages only read, as the device whose signed request opened the session; every change is a device-signed API
request that the page's script sends to the `/v1/...` routes, exactly as a phone app does."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any, TypeVar

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.di import NamedDependency, Provide
from litestar.params import FromQuery, SkipValidation

from ecard.cards import Cards
from ecard.complaints import Complaints
from ecard.family import Family
from ecard.h5.service import PageSessions
from ecard.kit.edge import SIGNED_PROBLEMS, signed_by
from ecard.kit.pages import Pages
from ecard.kit.principal import ClientKind, Principal
from ecard.kit.problems import problems
from ecard.kit.refusal import Refusal
from ecard.payments import Payments
from ecard.portal import Provider
from ecard.verify import VerifyDeps, timeline

T = TypeVar("T")
COOKIE = "ecard_h5"
PAGES = Pages("ecard.h5")
SCRIPT = resources.files("ecard.h5").joinpath("assets/h5.js").read_bytes()
# the script's URL names its content, so that it may be cached for a year and still change with a release
SCRIPT_VERSION = hashlib.sha256(SCRIPT).hexdigest()[:16]
YEAR_S = 365 * 86400
# what a pasted link or scanned code may carry: the merchant's pull-up link or the portal's login link, or the id
_BILL_ID = re.compile(r"bil_[A-Za-z0-9_-]{8,64}")
_LOGIN_ID = re.compile(r"(?<=login_id=)[A-Za-z0-9_-]{8,128}|^[A-Za-z0-9_-]{8,128}$")
NAV = (
    ("/h5/", "home", "电子社保卡"),
    ("/h5/history", "history", "查询记录"),
    ("/h5/pay", "pay", "缴费"),
    ("/h5/pin", "pin", "支付密码"),
    ("/h5/logins", "logins", "扫码登录"),
    ("/h5/yukuai", "yukuai", "渝快码"),
    ("/h5/family", "family", "亲情服务"),
    ("/h5/lost", "lost", "挂失"),
    ("/h5/complaints", "complaints", "投诉"),
    ("/h5/notices", "notices", "通知"),
)


def _html(frame_ancestors: str, name: str, **context: object) -> Response[str]:
    rendered = PAGES.render(
        name, frame_ancestors=frame_ancestors, script=f"/h5/assets/h5.js?v={SCRIPT_VERSION}", nav=NAV, **context
    )
    return Response(rendered.html, media_type="text/html; charset=utf-8", headers=rendered.headers)


def _shell(frame_ancestors: str, *, signed_out: bool = False) -> Response[str]:
    """The page without a live session: no personal data; its script re-opens the session or enrols."""
    return _html(frame_ancestors, "shell.html", page="shell", signed_out=signed_out)


async def _page_device(
    request: Request[Any, Any, Any], h5_sessions: NamedDependency[SkipValidation[PageSessions]]
) -> Principal | None:
    """The device the request's page session stands for, or None (no cookie, an unknown or ended session)."""
    return await h5_sessions.device_for(request.cookies.get(COOKIE))


async def _read(read: Callable[[], Awaitable[T]]) -> tuple[T | None, str | None]:
    """What a room answers for the page, or the refusal's code to show instead (a suspended card, ...)."""
    try:
        return await read(), None
    except Refusal as refusal:
        return None, refusal.code


class H5Controller(Controller):
    path = "/h5"
    tags = ["citizen pages"]  # noqa: RUF012
    include_in_schema = False
    dependencies = {"device": Provide(_page_device)}  # noqa: RUF012

    @post(
        "/session",
        status_code=204,
        dependencies={"principal": signed_by(ClientKind.DEVICE)},
        summary="Open a page session for the device that signed the request (cookie ecard_h5)",
        responses=problems(*SIGNED_PROBLEMS, "forbidden"),
    )
    async def open_session(
        self,
        request: Request[Any, Any, Any],
        h5_sessions: NamedDependency[PageSessions],
        principal: NamedDependency[Principal],
    ) -> Response[None]:
        token = await h5_sessions.open(principal)
        cookie = Cookie(
            key=COOKIE,
            value=token,
            path="/h5/",
            max_age=h5_sessions.ttl_s,
            httponly=True,
            samesite="strict",
            secure=h5_sessions.https or request.url.scheme == "https",
        )
        return Response(None, status_code=204, cookies=[cookie], headers={"Cache-Control": "no-store"})

    @post("/logout", status_code=204, summary="End the page session")
    async def logout(
        self, request: Request[Any, Any, Any], h5_sessions: NamedDependency[PageSessions]
    ) -> Response[None]:
        await h5_sessions.close(request.cookies.get(COOKIE))
        gone = Cookie(key=COOKIE, value="", path="/h5/", max_age=0, httponly=True, samesite="strict")
        return Response(None, status_code=204, cookies=[gone], headers={"Cache-Control": "no-store"})

    @get("/assets/h5.js", summary="The pages' one script")
    async def script(self) -> Response[bytes]:
        return Response(
            SCRIPT,
            media_type="text/javascript; charset=utf-8",
            headers={"Cache-Control": f"public, max-age={YEAR_S}, immutable", "X-Content-Type-Options": "nosniff"},
        )

    @get("/", summary="Home: the dynamic code")
    async def home(
        self,
        device: NamedDependency[Principal | None],
        h5_frame_ancestors: NamedDependency[str],
        signed_out: FromQuery[bool] = False,
    ) -> Response[str]:
        if device is None:
            return _shell(h5_frame_ancestors, signed_out=signed_out)
        return _html(h5_frame_ancestors, "home.html", page="home", device=device)

    @get("/history", summary="Who checked the card, and what was paid into it")
    async def history(
        self,
        device: NamedDependency[Principal | None],
        h5_frame_ancestors: NamedDependency[str],
        verify_deps: NamedDependency[VerifyDeps],
    ) -> Response[str]:
        if device is None:
            return _shell(h5_frame_ancestors)
        card_id = device.parent_id or ""
        entries, refused = await _read(lambda: timeline(device, card_id, verify_deps))
        return _html(
            h5_frame_ancestors, "history.html", page="history", device=device, entries=entries or [], refused=refused
        )

    @get("/pay", summary="A bill to pay: merchant, item and amount, and the PIN")
    async def pay(
        self,
        device: NamedDependency[Principal | None],
        h5_frame_ancestors: NamedDependency[str],
        payments: NamedDependency[Payments],
        bill: FromQuery[str] = "",
    ) -> Response[str]:
        if device is None:
            return _shell(h5_frame_ancestors)
        found = _BILL_ID.search(bill[:300])
        view, refused = (None, "not_found" if bill else None)
        if found is not None:
            view, refused = await _read(lambda: payments.view(found.group(0)))
        return _html(h5_frame_ancestors, "pay.html", page="pay", device=device, bill=view, refused=refused)

    @get("/pin", summary="Set or change the payment PIN")
    async def pin(
        self,
        device: NamedDependency[Principal | None],
        h5_frame_ancestors: NamedDependency[str],
    ) -> Response[str]:
        if device is None:
            return _shell(h5_frame_ancestors)
        return _html(h5_frame_ancestors, "pin.html", page="pin", device=device)

    @get("/logins", summary="A portal login to approve, with number matching")
    async def logins(
        self,
        device: NamedDependency[Principal | None],
        h5_frame_ancestors: NamedDependency[str],
        portal_provider: NamedDependency[Provider],
        login: FromQuery[str] = "",
    ) -> Response[str]:
        if device is None:
            return _shell(h5_frame_ancestors)
        found = _LOGIN_ID.search(login[:300])
        view, refused = (None, "login_not_found" if login else None)
        if found is not None:
            view, refused = await _read(lambda: portal_provider.view(device, found.group(0)))
        return _html(h5_frame_ancestors, "logins.html", page="logins", device=device, login=view, refused=refused)

    @get("/yukuai", summary="Link the card to a 渝快办 account (渝快码), with consent")
    async def yukuai(
        self,
        device: NamedDependency[Principal | None],
        h5_frame_ancestors: NamedDependency[str],
    ) -> Response[str]:
        if device is None:
            return _shell(h5_frame_ancestors)
        return _html(h5_frame_ancestors, "yukuai.html", page="yukuai", device=device)

    @get("/family", summary="Family members: list, add, end")
    async def family(
        self,
        device: NamedDependency[Principal | None],
        h5_frame_ancestors: NamedDependency[str],
        family: NamedDependency[Family],
    ) -> Response[str]:
        if device is None:
            return _shell(h5_frame_ancestors)
        card_id = device.parent_id or ""
        members, refused = await _read(lambda: family.members(device, card_id))
        return _html(
            h5_frame_ancestors, "family.html", page="family", device=device, members=members or [], refused=refused
        )

    @get("/lost", summary="Report the card lost, after a confirmation step")
    async def lost(
        self,
        device: NamedDependency[Principal | None],
        h5_frame_ancestors: NamedDependency[str],
        confirm: FromQuery[bool] = False,
    ) -> Response[str]:
        if device is None:
            return _shell(h5_frame_ancestors)
        return _html(h5_frame_ancestors, "lost.html", page="lost", device=device, confirm=confirm)

    @get("/complaints", summary="File a complaint; the complaints filed from this card")
    async def complaints(
        self,
        device: NamedDependency[Principal | None],
        h5_frame_ancestors: NamedDependency[str],
        complaints: NamedDependency[Complaints],
    ) -> Response[str]:
        if device is None:
            return _shell(h5_frame_ancestors)
        card_id = device.parent_id or ""
        filed, refused = await _read(lambda: complaints.of_card(device, card_id))
        return _html(
            h5_frame_ancestors, "complaints.html", page="complaints", device=device, filed=filed or [], refused=refused
        )

    @get("/notices", summary="What the holder has been told about the card")
    async def notices(
        self,
        device: NamedDependency[Principal | None],
        h5_frame_ancestors: NamedDependency[str],
        cards: NamedDependency[Cards],
    ) -> Response[str]:
        if device is None:
            return _shell(h5_frame_ancestors)
        card_id = device.parent_id or ""
        items, refused = await _read(lambda: cards.notices(device, card_id))
        return _html(
            h5_frame_ancestors, "notices.html", page="notices", device=device, items=items or [], refused=refused
        )
