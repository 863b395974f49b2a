"""HTTP of portal login: the OpenID Connect endpoints, the app's login requests, and portal registration."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode

import msgspec
from litestar import Controller, HttpMethod, MediaType, Request, Response, get, post, route
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, FromQuery, JSONBody

from ecard.kit.edge import SIGNED_PROBLEMS, operator_session, signed_by
from ecard.kit.principal import ClientKind, Principal
from ecard.kit.problems import PROBLEM_CODE_STATE, problems
from ecard.kit.refusal import STATUS_OF, Refusal
from ecard.portal.models import (
    Approval,
    LoginHistory,
    LoginStatus,
    LoginView,
    NewPortal,
    PortalAnswer,
    PortalList,
    RedirectAnswer,
)
from ecard.portal.page import waiting_page
from ecard.portal.service import LOGIN_TTL_S, PATHS, Portals, Provider

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
FORM = "application/x-www-form-urlencoded"
LOGIN_SECRET_HEADER = "ecard-login-secret"  # noqa: S105 - a header name


class OAuthError(msgspec.Struct):
    """RFC 6749 §5.2 error answer; `code` repeats `error` as everywhere else in the API."""

    error: str
    error_description: str
    code: str


def _oauth_errors(*codes: str) -> dict[int, ResponseSpec]:
    by_status: dict[int, list[str]] = {}
    for code in codes:
        by_status.setdefault(STATUS_OF[code], []).append(code)
    return {
        status: ResponseSpec(
            data_container=OAuthError,
            media_type=MediaType.JSON,
            description="OAuth error; `error` is one of: " + ", ".join(sorted(names)),
        )
        for status, names in by_status.items()
    }


def oauth_refusal(request: Request[Any, Any, Any], exc: Refusal) -> Response[Any]:
    """Refusals at the OAuth endpoints in the shape stock OAuth clients read (RFC 6749 §5.2, RFC 6750 §3)."""
    request.scope.setdefault("state", {})[PROBLEM_CODE_STATE] = exc.code
    headers = dict(NO_STORE)
    if exc.code == "invalid_token":
        headers["WWW-Authenticate"] = f'Bearer error="invalid_token", error_description="{exc.detail}"'
    return Response(
        content={"error": exc.code, "error_description": exc.detail, "code": exc.code},
        status_code=exc.status,
        media_type=MediaType.JSON,
        headers=headers,
    )


async def _form(request: Request[Any, Any, Any]) -> dict[str, str]:
    """An OAuth request body: form-encoded, each parameter at most once (RFC 6749 §3.1)."""
    if not request.headers.get("content-type", "").lower().startswith(FORM):
        raise Refusal("invalid_request", f"send the parameters as {FORM}")
    try:
        pairs = parse_qsl((await request.body()).decode(), keep_blank_values=True)
    except (UnicodeDecodeError, ValueError) as exc:
        raise Refusal("invalid_request", "the body is not a valid form") from exc
    form = dict(pairs)
    if len(form) != len(pairs):
        raise Refusal("invalid_request", "a parameter is repeated")
    return form


CLIENT_ERRORS = ("invalid_client", "invalid_request")


class OAuthController(Controller):
    """PAR, token, revocation and userinfo: machine-to-machine, with OAuth error answers."""

    path = "/oauth2"
    tags = ["portal login"]  # noqa: RUF012
    exception_handlers = {Refusal: oauth_refusal}  # noqa: RUF012

    @post(
        PATHS["par"].removeprefix("/oauth2"),
        status_code=201,
        summary="Pushed authorization request (RFC 9126): the portal's request, held for its request_uri",
        responses=_oauth_errors(*CLIENT_ERRORS, "invalid_scope", "unsupported_response_type"),
    )
    async def par(
        self, request: Request[Any, Any, Any], portal_provider: NamedDependency[Provider]
    ) -> Response[dict[str, Any]]:
        form = await _form(request)
        portal = await portal_provider.authenticate(form)
        request_uri, expires_in = await portal_provider.push(portal, form)
        return Response({"request_uri": request_uri, "expires_in": expires_in}, status_code=201, headers=NO_STORE)

    @post(
        PATHS["token"].removeprefix("/oauth2"),
        status_code=200,
        summary="Token endpoint: authorization_code with PKCE, private_key_jwt",
        responses=_oauth_errors(*CLIENT_ERRORS, "invalid_grant", "unsupported_grant_type"),
    )
    async def token(
        self, request: Request[Any, Any, Any], portal_provider: NamedDependency[Provider]
    ) -> Response[dict[str, Any]]:
        form = await _form(request)
        portal = await portal_provider.authenticate(form)
        return Response(await portal_provider.token(portal, form), headers=NO_STORE)

    @post(
        PATHS["revocation"].removeprefix("/oauth2"),
        status_code=200,
        summary="Token revocation (RFC 7009)",
        responses=_oauth_errors(*CLIENT_ERRORS),
    )
    async def revoke(
        self, request: Request[Any, Any, Any], portal_provider: NamedDependency[Provider]
    ) -> Response[None]:
        form = await _form(request)
        portal = await portal_provider.authenticate(form)
        await portal_provider.revoke(portal, form)
        return Response(None, status_code=200, headers=NO_STORE)

    @route(
        PATHS["userinfo"].removeprefix("/oauth2"),
        http_method=[HttpMethod.GET, HttpMethod.POST],
        status_code=200,
        summary="UserInfo (GET or POST): the claims the portal may have, for a bearer access token",
        responses=_oauth_errors("invalid_token"),
    )
    async def userinfo(
        self, request: Request[Any, Any, Any], portal_provider: NamedDependency[Provider]
    ) -> Response[dict[str, Any]]:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Refusal("invalid_token", "send the access token as Authorization: Bearer")
        return Response(await portal_provider.userinfo(token.strip()), headers=NO_STORE)


class ProviderController(Controller):
    """Discovery, the JWKS, the authorization endpoint and the waiting page's status."""

    path = "/"
    tags = ["portal login"]  # noqa: RUF012

    @get(PATHS["discovery"], summary="OpenID Provider metadata")
    async def discovery(self, portal_provider: NamedDependency[Provider]) -> dict[str, Any]:
        return portal_provider.discovery()

    @get(PATHS["jwks"], summary="The id_token signing keys (JWKS)")
    async def jwks(self, portal_provider: NamedDependency[Provider]) -> dict[str, list[dict[str, str]]]:
        return await portal_provider.signing.jwks()

    @get(
        PATHS["authorize"],
        summary="Authorization endpoint (PAR request_uri only): 302 to the app, or the cross-device QR page",
        responses={
            302: ResponseSpec(data_container=None, description="Location: ecard://login?login_id=..."),
            **problems("invalid_request_uri"),
        },
    )
    async def authorize(
        self,
        portal_provider: NamedDependency[Provider],
        client_id: FromQuery[str | None] = None,
        request_uri: FromQuery[str | None] = None,
    ) -> Response[Any]:
        login, secret = await portal_provider.authorize(client_id, request_uri)
        link = "ecard://login?" + urlencode({"login_id": login.login_id})
        if login.number is None:
            return Response(None, status_code=302, headers={"Location": link, **NO_STORE})
        page, csp = waiting_page(
            login.portal_name,
            link,
            login.number,
            f"/oauth2/logins/{login.login_id}/status",
            secret,
            LOGIN_TTL_S,
        )
        headers = {
            "Content-Security-Policy": csp,
            "X-Frame-Options": "DENY",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            **NO_STORE,
        }
        return Response(page, media_type=MediaType.HTML, headers=headers)

    @get(
        "/oauth2/logins/{login_id:str}/status",
        summary="The waiting page's poll: pending, or where to go (needs the page's Ecard-Login-Secret header)",
        responses=problems("login_not_found"),
    )
    async def status(
        self, request: Request[Any, Any, Any], portal_provider: NamedDependency[Provider], login_id: FromPath[str]
    ) -> Response[LoginStatus]:
        secret = request.headers.get(LOGIN_SECRET_HEADER, "")
        return Response(await portal_provider.status(login_id, secret), headers=NO_STORE)


LOGIN_PROBLEMS = (
    *SIGNED_PROBLEMS,
    "forbidden",
    "login_not_found",
    "login_expired",
    "login_closed",
    "card_suspended",
    "card_cancelled",
)


class LoginController(Controller):
    """The citizen's app: see a login request, approve or decline it, see past logins."""

    path = "/v1"
    tags = ["devices"]  # noqa: RUF012
    dependencies = {"principal": signed_by(ClientKind.DEVICE)}  # noqa: RUF012

    @get(
        "/logins/{login_id:str}",
        summary="A login request: which portal, which claims, until when",
        responses=problems(*LOGIN_PROBLEMS),
    )
    async def view(
        self, portal_provider: NamedDependency[Provider], principal: NamedDependency[Principal], login_id: FromPath[str]
    ) -> LoginView:
        return await portal_provider.view(principal, login_id)

    @post(
        "/logins/{login_id:str}/approve",
        status_code=200,
        summary="Approve: the portal's redirect URI with code, state and iss (cross device: send the page's number)",
        responses=problems(*LOGIN_PROBLEMS, "number_mismatch"),
    )
    async def approve(
        self,
        portal_provider: NamedDependency[Provider],
        principal: NamedDependency[Principal],
        login_id: FromPath[str],
        data: JSONBody[Approval],
    ) -> RedirectAnswer:
        return RedirectAnswer(await portal_provider.approve(principal, login_id, data.number))

    @post(
        "/logins/{login_id:str}/deny",
        status_code=200,
        summary="Decline: the portal's redirect URI with error=access_denied",
        responses=problems(*LOGIN_PROBLEMS),
    )
    async def deny(
        self, portal_provider: NamedDependency[Provider], principal: NamedDependency[Principal], login_id: FromPath[str]
    ) -> RedirectAnswer:
        return RedirectAnswer(await portal_provider.deny(principal, login_id))

    @get(
        "/cards/{card_id:str}/logins",
        summary="Every portal login of the card: which portal, when, which claims, approved or declined",
        responses=problems(*SIGNED_PROBLEMS, "forbidden"),
    )
    async def history(
        self, portal_provider: NamedDependency[Provider], principal: NamedDependency[Principal], card_id: FromPath[str]
    ) -> LoginHistory:
        return LoginHistory(items=await portal_provider.history(principal, card_id))


class PortalAdminController(Controller):
    path = "/v1/admin/portals"
    tags = ["operators"]  # noqa: RUF012
    dependencies = {"operator": operator_session}  # noqa: RUF012

    @post(
        "/",
        status_code=201,
        summary="Register a portal (OpenID Connect client): redirect URIs, public keys, claims, items",
        responses=problems("unauthorized", "invalid_request", "item_unknown"),
    )
    async def register(
        self, portals: NamedDependency[Portals], operator: NamedDependency[str], data: JSONBody[NewPortal]
    ) -> PortalAnswer:
        return await portals.register(operator, data)

    @get("/", summary="Every registered portal", responses=problems("unauthorized"))
    async def listing(
        self,
        portals: NamedDependency[Portals],
        operator: NamedDependency[str],  # noqa: ARG002 - its presence is the operator guard
    ) -> PortalList:
        return PortalList(items=await portals.listing())
