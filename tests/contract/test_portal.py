"""API.md, "Portal login (OpenID Connect)": discovery, portal registration, PAR + PKCE + private_key_jwt, the app's
approval on the same device and across devices, pairwise subjects and registered claims only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from tests.contract.conftest import BASE
from tests.contract.support import Integrator, problem_of
from tests.portal.oidc import PortalClient, same_device_login, start_login
from tests.support import Actor, World, p256_actor

POLICE_CALLBACK = "https://jkb.gaj.cq.gov.cn/oidc/callback"
LIBRARY_CALLBACK = "https://lib.wulong.gov.cn/login/callback"


async def registered(world: World, claims: list[str], items: list[str], callback: str, name: str) -> PortalClient:
    """`POST /v1/admin/portals` `{"name","redirect_uris":[...],"jwks":{"keys":[...]},"claims":[...],
    "allowed_items":[...]}` → 201 `{"client_id"}`, then a stock client configured from discovery alone."""
    actor: Actor = p256_actor()
    body = {
        "name": name,
        "redirect_uris": [callback],
        "jwks": {"keys": [{**actor.jwk, "kid": "portal-key-1"}]},
        "claims": claims,
        "allowed_items": items,
    }
    answer = await Integrator(world).admin("POST", "/v1/admin/portals", body)
    assert answer.status_code == 201, answer.text
    actor.key_id = "portal-key-1"
    actor.ids["client_id"] = answer.json()["client_id"]
    client = PortalClient(BASE, actor, callback, transport=httpx.ASGITransport(app=world.app))  # type: ignore[arg-type]
    await client.discover()
    return client


@pytest.fixture
async def police(world: World) -> AsyncIterator[PortalClient]:
    client = await registered(world, ["name", "id_number"], ["wl-010"], POLICE_CALLBACK, "警快办")
    yield client
    await client.aclose()


@pytest.fixture
async def library(world: World) -> AsyncIterator[PortalClient]:
    client = await registered(world, ["region"], ["wl-030"], LIBRARY_CALLBACK, "武隆区图书馆")
    yield client
    await client.aclose()


async def test_discovery_says_where_everything_is(api: Integrator) -> None:
    """Discovery at `/.well-known/openid-configuration`; everything else (authorize, PAR, token, userinfo, JWKS,
    revocation) is where discovery says."""
    answer = await api.client.get("/.well-known/openid-configuration")

    assert answer.status_code == 200, answer.text
    metadata = answer.json()
    for endpoint in (
        "authorization_endpoint",
        "pushed_authorization_request_endpoint",
        "token_endpoint",
        "userinfo_endpoint",
        "jwks_uri",
        "revocation_endpoint",
    ):
        assert metadata[endpoint].startswith(BASE)
    assert (await api.client.get(urlsplit(metadata["jwks_uri"]).path)).json()["keys"]
    assert metadata["issuer"] == BASE
    assert "private_key_jwt" in metadata["token_endpoint_auth_methods_supported"]
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    assert metadata["require_pushed_authorization_requests"] is True


async def test_post_admin_portals_answers_201_client_id(police: PortalClient) -> None:
    """→ 201 `{"client_id"}`."""
    assert police.client_id


async def test_par_with_pkce_s256_is_required(world: World, police: PortalClient) -> None:
    """PKCE S256 and PAR are required."""
    params, _, _, _ = police.request_params()
    without_pkce = {k: v for k, v in params.items() if not k.startswith("code_challenge")}

    unpushed = await world.client.get(police.metadata["authorization_endpoint"], params=params)
    no_pkce = await police.push_raw(without_pkce)

    assert unpushed.status_code == 400
    assert no_pkce.status_code == 400
    assert no_pkce.json()["error"] == "invalid_request"


async def test_same_device_authorize_answers_302_to_the_app_and_the_app_approves(
    world: World, api: Integrator, police: PortalClient
) -> None:
    """Same device: authorize answers 302 to `ecard://login?login_id=...`; `GET /v1/logins/{login_id}` (device-signed:
    portal name, claims asked); `POST /v1/logins/{login_id}/approve` (device-signed) → 200 `{"redirect_uri"}`
    carrying `code` and `state`."""
    phone = await api.phone("张小三")
    pushed, login_id = await start_login(world, police)

    shown = await api.signed(phone, "GET", f"/v1/logins/{login_id}")
    approved = await api.signed(phone, "POST", f"/v1/logins/{login_id}/approve", {})

    assert shown.status_code == 200, shown.text
    assert shown.json()["portal_name"] == "警快办"
    assert shown.json()["claims"] == ["name", "id_number"]
    assert approved.status_code == 200, approved.text
    redirect = dict(parse_qsl(urlsplit(approved.json()["redirect_uri"]).query))
    assert redirect["code"]
    assert redirect["state"] == pushed.state


async def test_the_token_userinfo_jwks_and_revocation_work_with_private_key_jwt(
    world: World, api: Integrator, police: PortalClient
) -> None:
    """Clients authenticate with `private_key_jwt`; token, userinfo, JWKS, revocation; a portal receives only its
    registered claims (`name`, `id_number`, `region`, `card_status`)."""
    phone = await api.phone("张小三")
    pushed, redirect = await same_device_login(world, police, phone)

    token = await police.redeem(police.callback(redirect, pushed), pushed)
    claims = await police.id_token_claims(token["id_token"], pushed)
    info = await police.userinfo(token["access_token"])
    revoked = await police.revoke(token["access_token"])
    after = await police.userinfo(token["access_token"])

    assert (claims["name"], claims["id_number"]) == ("张小三", phone.ids["id_number"])
    assert "region" not in claims
    assert info.json() == {"sub": claims["sub"], "name": "张小三", "id_number": phone.ids["id_number"]}
    assert revoked.status_code == 200
    assert after.status_code == 401


async def test_subjects_are_pairwise_per_portal(
    world: World, api: Integrator, police: PortalClient, library: PortalClient
) -> None:
    """Subjects are pairwise per portal; a portal receives only its registered claims."""
    phone = await api.phone()
    subjects = []
    for portal in (police, library, police):
        pushed, redirect = await same_device_login(world, portal, phone)
        token = await portal.redeem(portal.callback(redirect, pushed), pushed)
        subjects.append(await portal.id_token_claims(token["id_token"], pushed))

    at_police, at_library, at_police_again = subjects
    assert at_police["sub"] == at_police_again["sub"] != at_library["sub"]
    assert at_library["region"] == "cq"
    assert not {"name", "id_number", "card_status"} & at_library.keys()


def _page_number(page: str) -> int:
    return int(page.split('<p id="number"')[1].split(">", 1)[1].split("<", 1)[0])


def _page_login_id(page: str) -> str:
    return page.split('data-status-url="')[1].split('"', 1)[0].split("/")[3]


async def test_cross_device_login_shows_a_qr_and_a_two_digit_number_the_app_must_send(
    world: World, api: Integrator, police: PortalClient
) -> None:
    """Cross device: authorize with `prompt=login` and `display=page` answers an HTML page with a QR of the same link
    and a two-digit number; the app must send that number when it approves (`{"number":N}`)."""
    phone = await api.phone()
    pushed = await police.push(prompt="login", display="page")

    page = await world.client.get(police.authorize_url(pushed))
    number = _page_number(page.text)
    approved = await api.signed(phone, "POST", f"/v1/logins/{_page_login_id(page.text)}/approve", {"number": number})

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert 'src="data:image/png;base64,' in page.text
    assert 10 <= number <= 99
    assert approved.status_code == 200, approved.text
    assert police.callback(approved.json()["redirect_uri"], pushed)


async def test_a_wrong_number_is_refused_and_ends_the_login_request(
    world: World, api: Integrator, police: PortalClient
) -> None:
    """A wrong number is refused and ends the login request."""
    phone = await api.phone()
    pushed = await police.push(prompt="login", display="page")
    page = await world.client.get(police.authorize_url(pushed))
    login_id, number = _page_login_id(page.text), _page_number(page.text)

    wrong = await api.signed(phone, "POST", f"/v1/logins/{login_id}/approve", {"number": (number % 89) + 10})
    right_after = await api.signed(phone, "POST", f"/v1/logins/{login_id}/approve", {"number": number})

    assert problem_of(wrong) == (403, "number_mismatch")
    assert problem_of(right_after) == (409, "login_closed")
