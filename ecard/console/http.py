"""The console's pages over HTTP: forms post, the server answers with a page or a redirect (POST/redirect/GET).

Every action is the room service the admin API calls, with the operator of the session cookie as actor."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

import msgspec
from litestar import Controller, MediaType, Request, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect
from litestar.types import ExceptionHandlersMap

from ecard.cards import Cards, StatusChange, mask_name
from ecard.catalog import Catalog, ItemFields
from ecard.complaints import Complaints, NewReply
from ecard.console.service import Console, bar_chart, mask_id_number
from ecard.depth import Depth
from ecard.disbursements import Decision, Disbursements
from ecard.kit.pages import Pages
from ecard.kit.refusal import Refusal
from ecard.merchants import ClientStatus, Merchants
from ecard.operators import Operators
from ecard.risk import Resolution, RiskEvents

T = TypeVar("T")

COOKIE = "ecard_console"
LOGIN_COOKIE = "ecard_console_login"
ROOT = "/console/"
LOGIN = "/console/login"
PAGES = Pages("ecard.console")
FUNCTIONS = ("identity", "disbursement", "payment")
FUNCTION_NAMES = {
    "identity": "身份识别 identity",
    "disbursement": "资金发放 disbursement",
    "payment": "缴费支付 payment",
}
_BAD_LOGIN = "用户名、密码或动态码不正确。The username, password or one-time code is wrong."
# what a redirect after an action says it did (`?done=`), in words fixed here: nothing the client sent is echoed
NOTICES = {
    "status": "卡状态已更改。The card's status was changed.",
    "approved": "已记录您的批准。Your approval was recorded.",
    "rejected": "批次已驳回。The batch was rejected.",
    "resolved": "风险事件已处理。The risk event was resolved.",
    "replied": "答复已发送。The reply was sent.",
    "saved": "事项已保存为新版本。The item was saved as a new version.",
    "merchant": "商户状态已更改。The merchant's status was changed.",
    "terminal": "终端状态已更改。The terminal's status was changed.",
}
# how many catalog versions the item page looks through for the item's own history
VERSIONS_SHOWN = 200
_LISTS = ("functions", "card_modes", "regions", "discloses")
# refusals worth a sentence of their own on a page
EXPLAINED = {
    "approval_duplicate": "您已批准过此批次：第二次批准须由另一位操作员作出。"
    "You have approved this batch already: the second approval must come from a different operator.",
    "forbidden": "表单已过期或不是本控制台发出的，未做任何更改。"
    "The form is stale or did not come from this console; nothing was changed.",
}
_FIELD = re.compile(r"`\$\.([a-z_]{1,40})")


class LoginNeeded(Exception):  # noqa: N818 - a redirect to the login page, not an error
    """The request carries no live operator session."""


@dataclass(frozen=True)
class Desk:
    """The logged-in operator, the session's CSRF token for forms, and a posted form (CSRF already checked)."""

    operator: str
    token: str
    csrf: str
    form: Mapping[str, str]


def _https(request: Request[Any, Any, Any]) -> bool:
    return request.url.scheme == "https"


async def _form(request: Request[Any, Any, Any]) -> dict[str, str]:
    form = await request.form()
    return {key: value for key, value in form.multi_items() if isinstance(value, str)}


async def _desk(
    request: Request[Any, Any, Any], operators: NamedDependency[Operators], console: NamedDependency[Console]
) -> Desk:
    token = request.cookies.get(COOKIE, "")
    if not token:
        raise LoginNeeded
    try:
        operator = await operators.operator_for(token)
    except Refusal as refused:
        if refused.code == "unauthorized":
            raise LoginNeeded from None
        raise
    form: dict[str, str] = {}
    if request.method == "POST":
        form = await _form(request)
        console.check_csrf(token, form.get("csrf", ""))
    return Desk(operator, token, console.csrf_for(token), form)


def page(
    name: str, desk: Desk | None, http_status: int = 200, notice: str | None = None, **context: Any
) -> Response[str]:
    rendered = PAGES.render(name, desk=desk, notice=notice, yuan=yuan, **context)
    return Response(rendered.html, status_code=http_status, media_type=MediaType.HTML, headers=rendered.headers)


def yuan(fen: int) -> str:
    return f"¥{fen // 100:,}.{fen % 100:02d}"


def _see(path: str, done: str) -> Redirect:
    return Redirect(f"{path}?done={done}", status_code=303)


def _parsed(kind: type[T], fields: Mapping[str, object]) -> T:
    """The form's fields as the API's own request model, with its limits; 400 naming the field, never its value."""
    try:
        return msgspec.convert(fields, kind)
    except msgspec.ValidationError as exc:
        found = _FIELD.search(str(exc))
        where = f" ({found.group(1)})" if found else ""
        raise Refusal("invalid_request", f"a field of the form is missing or not valid{where}") from None


def _login_needed(_: Request[Any, Any, Any], __: LoginNeeded) -> Response[Any]:
    return Redirect(LOGIN, status_code=303)


def _refused(_: Request[Any, Any, Any], refused: Refusal) -> Response[str]:
    response = page(
        "refused.html",
        None,
        refused.status,
        code=refused.code,
        detail=refused.detail,
        explained=EXPLAINED.get(refused.code),
    )
    if refused.retry_after is not None:
        response.headers["Retry-After"] = str(max(1, refused.retry_after))
    return response


HANDLERS: ExceptionHandlersMap = {LoginNeeded: _login_needed, Refusal: _refused}


class ConsoleLoginController(Controller):
    path = "/console"
    include_in_schema = False
    exception_handlers = HANDLERS

    def _login_page(
        self, console: Console, request: Request[Any, Any, Any], http_status: int, message: str | None
    ) -> Response[str]:
        cookie, field = console.login_csrf()
        response = page("login.html", None, http_status, csrf=field, message=message)
        response.set_cookie(
            LOGIN_COOKIE, cookie, path=ROOT, httponly=True, samesite="strict", secure=_https(request), max_age=3600
        )
        return response

    @get("/login")
    async def login_form(self, request: Request[Any, Any, Any], console: NamedDependency[Console]) -> Response[str]:
        return self._login_page(console, request, 200, None)

    @post("/login", status_code=200)
    async def log_in(
        self,
        request: Request[Any, Any, Any],
        console: NamedDependency[Console],
        operators: NamedDependency[Operators],
    ) -> Response[Any]:
        form = await _form(request)
        console.check_login_csrf(request.cookies.get(LOGIN_COOKIE, ""), form.get("csrf", ""))
        address = request.client.host if request.client else None
        try:
            session = await operators.login(
                form.get("username", ""), form.get("password", ""), form.get("totp", ""), address
            )
        except Refusal as refused:
            if refused.code != "operator_credentials_invalid":
                raise
            return self._login_page(console, request, refused.status, _BAD_LOGIN)
        response: Response[Any] = Redirect(ROOT, status_code=303)
        response.set_cookie(
            COOKIE,
            session.token,
            path=ROOT,
            httponly=True,
            samesite="strict",
            secure=_https(request),
            max_age=console.session_ttl_s,
        )
        response.delete_cookie(LOGIN_COOKIE, path=ROOT)
        return response


class ConsoleController(Controller):
    path = "/console"
    include_in_schema = False
    dependencies = {"desk": Provide(_desk)}  # noqa: RUF012 - Litestar reads a plain dict
    exception_handlers = HANDLERS

    @post("/logout", status_code=303)
    async def log_out(self, desk: NamedDependency[Desk], operators: NamedDependency[Operators]) -> Response[Any]:
        await operators.log_out(desk.token)
        response: Response[Any] = Redirect(LOGIN, status_code=303)
        response.delete_cookie(COOKIE, path=ROOT)
        return response

    @get("/")
    async def dashboard(
        self,
        desk: NamedDependency[Desk],
        risk: NamedDependency[RiskEvents],
        complaints: NamedDependency[Complaints],
        disbursements: NamedDependency[Disbursements],
    ) -> Response[str]:
        return page(
            "dashboard.html",
            desk,
            batches=len(await disbursements.listed("awaiting_approval")),
            events=len(await risk.events(None, None, "open")),
            open_complaints=len(await complaints.listed("received", overdue=False)),
        )

    # --- cardholders and cards (POST /v1/admin/cardholders/search, POST /v1/admin/cards/{id}/status) ----------

    @get("/cardholders")
    async def search_form(self, desk: NamedDependency[Desk]) -> Response[str]:
        return page("search.html", desk)

    @post("/cardholders/search", status_code=200)
    async def search(self, desk: NamedDependency[Desk], cards: NamedDependency[Cards]) -> Response[str]:
        id_number = desk.form.get("id_number", "").strip().upper()
        if not id_number or len(id_number) > 32:
            raise Refusal("invalid_request", "enter the ID number to search for")
        found = await cards.find(desk.operator, id_number)
        return page("found.html", desk, found=found, id_masked=mask_id_number(id_number))

    async def _card(
        self, desk: Desk, cards: Cards, card_id: str, done: str | None, *, reveal: Console | None
    ) -> Response[str]:
        holder = await reveal.reveal(desk.operator, card_id) if reveal else await cards.holder(card_id)
        if holder is None:
            raise Refusal("card_not_found", "no card has this id")
        return page(
            "card.html",
            desk,
            notice=NOTICES.get(done or ""),
            holder=holder,
            name_masked=mask_name(holder.name),
            id_shown=holder.id_number if reveal else mask_id_number(holder.id_number),
            revealed=reveal is not None,
        )

    @get("/cards/{card_id:str}")
    async def card(
        self,
        desk: NamedDependency[Desk],
        cards: NamedDependency[Cards],
        card_id: FromPath[str],
        done: FromQuery[str | None] = None,
    ) -> Response[str]:
        return await self._card(desk, cards, card_id, done, reveal=None)

    @post("/cards/{card_id:str}/reveal", status_code=200)
    async def reveal(
        self,
        desk: NamedDependency[Desk],
        cards: NamedDependency[Cards],
        console: NamedDependency[Console],
        card_id: FromPath[str],
    ) -> Response[str]:
        return await self._card(desk, cards, card_id, None, reveal=console)

    @post("/cards/{card_id:str}/status", status_code=303)
    async def set_status(
        self, desk: NamedDependency[Desk], cards: NamedDependency[Cards], card_id: FromPath[str]
    ) -> Redirect:
        change = _parsed(StatusChange, {"status": desk.form.get("status", ""), "reason": desk.form.get("reason", "")})
        await cards.set_status(desk.operator, card_id, change.status, change.reason)
        return _see(f"/console/cards/{quote(card_id, safe='')}", "status")

    # --- disbursement batches (POST /v1/admin/disbursements/{id}/approve and /reject) ---------------------

    @get("/disbursements")
    async def batches(
        self,
        desk: NamedDependency[Desk],
        disbursements: NamedDependency[Disbursements],
        status: FromQuery[str | None] = None,
    ) -> Response[str]:
        listed = await disbursements.listed(status or None)
        return page("batches.html", desk, batches=listed, status=status or "")

    @get("/disbursements/{batch_id:str}")
    async def batch(
        self,
        desk: NamedDependency[Desk],
        disbursements: NamedDependency[Disbursements],
        batch_id: FromPath[str],
        done: FromQuery[str | None] = None,
    ) -> Response[str]:
        batch = await disbursements.get(None, batch_id)
        approvers = await disbursements.approvers(batch_id)
        return page("batch.html", desk, notice=NOTICES.get(done or ""), batch=batch, approvers=approvers)

    @post("/disbursements/{batch_id:str}/approve", status_code=303)
    async def approve(
        self, desk: NamedDependency[Desk], disbursements: NamedDependency[Disbursements], batch_id: FromPath[str]
    ) -> Redirect:
        decision = _parsed(Decision, {"reason": desk.form.get("reason", "")})
        await disbursements.approve(desk.operator, batch_id, decision.reason)
        return _see(f"/console/disbursements/{quote(batch_id, safe='')}", "approved")

    @post("/disbursements/{batch_id:str}/reject", status_code=303)
    async def reject(
        self, desk: NamedDependency[Desk], disbursements: NamedDependency[Disbursements], batch_id: FromPath[str]
    ) -> Redirect:
        decision = _parsed(Decision, {"reason": desk.form.get("reason", "")})
        await disbursements.reject(desk.operator, batch_id, decision.reason)
        return _see(f"/console/disbursements/{quote(batch_id, safe='')}", "rejected")

    # --- risk events (GET /v1/admin/risk/events, POST /v1/admin/risk/events/{id}/resolve) -----------------

    @get("/risk")
    async def events(
        self,
        desk: NamedDependency[Desk],
        risk: NamedDependency[RiskEvents],
        kind: FromQuery[str | None] = None,
        status: FromQuery[str | None] = None,
        done: FromQuery[str | None] = None,
    ) -> Response[str]:
        shown = "open" if status is None else status
        listed = await risk.events(kind or None, None, shown or None)
        return page("risk.html", desk, notice=NOTICES.get(done or ""), events=listed, kind=kind or "", status=shown)

    @post("/risk/{event_id:str}/resolve", status_code=303)
    async def resolve(
        self, desk: NamedDependency[Desk], risk: NamedDependency[RiskEvents], event_id: FromPath[str]
    ) -> Redirect:
        verdict = _parsed(Resolution, {"outcome": desk.form.get("outcome", ""), "note": desk.form.get("note", "")})
        await risk.resolve(desk.operator, event_id, verdict.outcome, verdict.note)
        return _see("/console/risk", "resolved")

    # --- complaints (GET /v1/admin/complaints, GET .../{id}, POST .../{id}/replies) ------------------------

    @get("/complaints")
    async def complaints(
        self, desk: NamedDependency[Desk], complaints: NamedDependency[Complaints], status: FromQuery[str | None] = None
    ) -> Response[str]:
        listed = sorted(await complaints.listed(status or None, overdue=False), key=lambda c: c.due_at)
        return page("complaints.html", desk, complaints=listed, status=status or "")

    @get("/complaints/{complaint_id:str}")
    async def complaint(
        self,
        desk: NamedDependency[Desk],
        complaints: NamedDependency[Complaints],
        complaint_id: FromPath[str],
        done: FromQuery[str | None] = None,
    ) -> Response[str]:
        case = await complaints.case(desk.operator, complaint_id)
        return page("complaint.html", desk, notice=NOTICES.get(done or ""), case=case)

    @post("/complaints/{complaint_id:str}/reply", status_code=303)
    async def reply(
        self, desk: NamedDependency[Desk], complaints: NamedDependency[Complaints], complaint_id: FromPath[str]
    ) -> Redirect:
        reply = _parsed(NewReply, {"text": desk.form.get("text", ""), "status": desk.form.get("status", "")})
        await complaints.reply(desk.operator, complaint_id, reply)
        return _see(f"/console/complaints/{quote(complaint_id, safe='')}", "replied")

    # --- the depth report as charts (GET /v1/admin/depth) ---------------------------------------------------

    @get("/depth")
    async def depth(self, desk: NamedDependency[Desk], depth: NamedDependency[Depth]) -> Response[str]:
        report = await depth.report()
        by_function = []
        for function in FUNCTIONS:
            items = [item for item in report.items if function in item.functions]
            levels = [item.levels.get(function, 0) for item in items]
            targets = [item.target for item in items if item.target is not None]
            by_function.append(
                (
                    FUNCTION_NAMES[function],
                    round(sum(levels) / len(levels), 2) if levels else 0.0,
                    round(sum(targets) / len(targets), 2) if targets else None,
                )
            )
        scenes: dict[str, list[int]] = {}
        for item in report.items:
            for district, count in item.scenes.by_district.items():
                seen = scenes.setdefault(district, [0, 0])
                seen[0] += item.accepting_scenes.by_district.get(district, 0)
                seen[1] += count
        by_district = [
            (district, round(100 * accepting / total, 1) if total else 0.0, None)
            for district, (accepting, total) in sorted(scenes.items())
        ]
        return page(
            "depth.html",
            desk,
            report=report,
            functions=bar_chart("depth-functions", "各功能平均应用深度与年度目标", by_function, 3),
            districts=bar_chart("depth-districts", "各区县受理电子社保卡的场景占比", by_district, 100, "%"),
        )

    # --- the catalog (GET /v1/catalog/items/{code}, GET /v1/catalog/versions, PUT /v1/admin/catalog/items/{code}) ---

    @get("/catalog")
    async def catalog(self, desk: NamedDependency[Desk], catalog: NamedDependency[Catalog]) -> Response[str]:
        return page("catalog.html", desk, items=sorted(await catalog.items(), key=lambda item: item.item_code))

    @get("/catalog/{item_code:str}")
    async def item(
        self,
        desk: NamedDependency[Desk],
        catalog: NamedDependency[Catalog],
        item_code: FromPath[str],
        done: FromQuery[str | None] = None,
    ) -> Response[str]:
        version, item = await catalog.lookup(item_code)
        history = [
            (entry, change)
            for entry in await catalog.versions(None, VERSIONS_SHOWN)
            for change in entry.changes
            if change.item_code == item_code
        ]
        return page("item.html", desk, notice=NOTICES.get(done or ""), item=item, version=version, history=history)

    @post("/catalog/{item_code:str}", status_code=303)
    async def save_item(
        self, desk: NamedDependency[Desk], catalog: NamedDependency[Catalog], item_code: FromPath[str]
    ) -> Redirect:
        form = desk.form
        fields: dict[str, object] = {
            name: form.get(name, "") for name in ("name", "domain", "lead_department", "effective_from", "description")
        }
        fields.update({name: [v.strip() for v in form.get(name, "").split(",") if v.strip()] for name in _LISTS})
        fields["effective_to"] = form.get("effective_to") or None
        await catalog.put(desk.operator, item_code, _parsed(ItemFields, fields))
        return _see(f"/console/catalog/{quote(item_code, safe='')}", "saved")

    # --- merchants and terminals (GET /v1/admin/merchants/{id}, POST .../status, POST .../terminals/{t}/status) ---

    @get("/merchants")
    async def merchants(self, desk: NamedDependency[Desk], merchants: NamedDependency[Merchants]) -> Response[str]:
        return page("merchants.html", desk, merchants=await merchants.listed())

    @get("/merchants/{merchant_id:str}")
    async def merchant(
        self,
        desk: NamedDependency[Desk],
        merchants: NamedDependency[Merchants],
        merchant_id: FromPath[str],
        done: FromQuery[str | None] = None,
    ) -> Response[str]:
        merchant = await merchants.get(merchant_id)
        if merchant is None:
            raise Refusal("not_found", "no merchant has this id")
        terminals = await merchants.terminals(merchant_id)
        return page("merchant.html", desk, notice=NOTICES.get(done or ""), merchant=merchant, terminals=terminals)

    @post("/merchants/{merchant_id:str}/status", status_code=303)
    async def merchant_status(
        self, desk: NamedDependency[Desk], merchants: NamedDependency[Merchants], merchant_id: FromPath[str]
    ) -> Redirect:
        change = _parsed(ClientStatus, {"status": desk.form.get("status", "")})
        await merchants.set_status(desk.operator, merchant_id, change.status)
        return _see(f"/console/merchants/{quote(merchant_id, safe='')}", "merchant")

    @post("/merchants/{merchant_id:str}/terminals/{terminal_id:str}/status", status_code=303)
    async def terminal_status(
        self,
        desk: NamedDependency[Desk],
        merchants: NamedDependency[Merchants],
        merchant_id: FromPath[str],
        terminal_id: FromPath[str],
    ) -> Redirect:
        change = _parsed(ClientStatus, {"status": desk.form.get("status", "")})
        await merchants.set_terminal_status(desk.operator, merchant_id, terminal_id, change.status)
        return _see(f"/console/merchants/{quote(merchant_id, safe='')}", "terminal")
