"""Every way a login goes wrong is refused: PKCE, codes, redirect URIs, client assertions, expiry, numbers, cards."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
from authlib.integrations.base_client import OAuthError
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jwt
from joserfc.jwk import ECKey

from ecard.kit.jwk import private_jwk
from tests.portal.conftest import BASE
from tests.portal.oidc import PortalClient, start_login
from tests.support import World, problem


def oauth_error(answer: Any) -> tuple[int, str]:
    """(status, error) of an OAuth error answer (RFC 6749 §5.2): JSON with `error`, never cached."""
    assert answer.headers["content-type"].startswith("application/json"), answer.text
    assert answer.headers["cache-control"] == "no-store"
    return answer.status_code, answer.json()["error"]


def assertion(portal: PortalClient, key: Any = None, **claims: Any) -> dict[str, str]:
    """A client assertion made by hand with joserfc, for the shapes Authlib would never make."""
    now = int(time.time())
    body = {
        "iss": portal.client_id,
        "sub": portal.client_id,
        "aud": BASE,
        "iat": now,
        "exp": now + 60,
        "jti": uuid.uuid4().hex,
        **claims,
    }
    signing = ECKey.import_key(dict(private_jwk(key or portal.actor.key)))
    return {
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": jwt.encode({"alg": "ES256", "kid": portal.actor.key_id}, body, signing),
    }


async def test_pkce_is_required_and_only_s256(world: World, police: PortalClient) -> None:
    params, *_ = police.request_params()
    without = {k: v for k, v in params.items() if not k.startswith("code_challenge")}
    assert oauth_error(await police.push_raw(without)) == (400, "invalid_request")
    plain = {**params, "code_challenge_method": "plain", "code_challenge": "x" * 43}
    assert oauth_error(await police.push_raw(plain)) == (400, "invalid_request")


async def test_authorize_takes_pushed_requests_only_and_each_once(world: World, police: PortalClient) -> None:
    params, *_ = police.request_params()
    direct = await world.client.get(police.metadata["authorization_endpoint"], params=params)
    assert problem(direct) == (400, "invalid_request_uri")
    pushed = await police.push()
    assert (await world.client.get(police.authorize_url(pushed))).status_code == 302
    assert problem(await world.client.get(police.authorize_url(pushed))) == (400, "invalid_request_uri")


async def test_a_pushed_request_expires_after_90_seconds(world: World, police: PortalClient) -> None:
    pushed = await police.push()
    world.clock.advance(91)
    assert problem(await world.client.get(police.authorize_url(pushed))) == (400, "invalid_request_uri")


async def test_another_clients_request_uri_is_refused(
    world: World, police: PortalClient, library: PortalClient
) -> None:
    pushed = await police.push()
    stolen = library.authorize_url(pushed)
    assert problem(await world.client.get(stolen)) == (400, "invalid_request_uri")


async def test_a_wrong_verifier_is_refused_and_burns_the_code(world: World, police: PortalClient) -> None:
    device = await world.device()
    pushed, login_id = await start_login(world, police)
    redirect = (await world.signed(device, "POST", f"/v1/logins/{login_id}/approve", {})).json()["redirect_uri"]
    code = police.callback(redirect, pushed)
    with pytest.raises(OAuthError) as refused:
        await police.redeem(code, pushed, code_verifier="A" * 64)
    assert refused.value.error == "invalid_grant"
    with pytest.raises(OAuthError):
        await police.redeem(code, pushed)


async def test_a_token_request_without_the_verifier_is_refused(world: World, police: PortalClient) -> None:
    device = await world.device()
    pushed, login_id = await start_login(world, police)
    redirect = (await world.signed(device, "POST", f"/v1/logins/{login_id}/approve", {})).json()["redirect_uri"]
    form = {
        "grant_type": "authorization_code",
        "code": police.callback(redirect, pushed),
        "redirect_uri": police.redirect_uri,
    }
    assert oauth_error(await police.token_raw(form)) == (400, "invalid_grant")


async def test_a_reused_code_is_refused_and_revokes_its_tokens(world: World, police: PortalClient) -> None:
    device = await world.device()
    pushed, login_id = await start_login(world, police)
    redirect = (await world.signed(device, "POST", f"/v1/logins/{login_id}/approve", {})).json()["redirect_uri"]
    code = police.callback(redirect, pushed)
    token = await police.redeem(code, pushed)
    assert (await police.userinfo(token["access_token"])).status_code == 200
    with pytest.raises(OAuthError) as refused:
        await police.redeem(code, pushed)
    assert refused.value.error == "invalid_grant"
    assert (await police.userinfo(token["access_token"])).status_code == 401


async def test_a_code_lives_60_seconds(world: World, police: PortalClient) -> None:
    device = await world.device()
    pushed, login_id = await start_login(world, police)
    redirect = (await world.signed(device, "POST", f"/v1/logins/{login_id}/approve", {})).json()["redirect_uri"]
    world.clock.advance(61)
    with pytest.raises(OAuthError) as refused:
        await police.redeem(police.callback(redirect, pushed), pushed)
    assert refused.value.error == "invalid_grant"


async def test_an_access_token_lives_300_seconds(world: World, police: PortalClient) -> None:
    device = await world.device()
    pushed, login_id = await start_login(world, police)
    redirect = (await world.signed(device, "POST", f"/v1/logins/{login_id}/approve", {})).json()["redirect_uri"]
    token = await police.redeem(police.callback(redirect, pushed), pushed)
    world.clock.advance(301)
    assert (await police.userinfo(token["access_token"])).status_code == 401


async def test_redirect_uris_match_exactly(world: World, police: PortalClient) -> None:
    for near in (police.redirect_uri + "/", police.redirect_uri + "?next=x", police.redirect_uri.upper()):
        params, *_ = police.request_params(redirect_uri=near)
        assert oauth_error(await police.push_raw(params)) == (400, "invalid_request")
    device = await world.device()
    pushed, login_id = await start_login(world, police)
    redirect = (await world.signed(device, "POST", f"/v1/logins/{login_id}/approve", {})).json()["redirect_uri"]
    with pytest.raises(OAuthError) as refused:
        await police.redeem(police.callback(redirect, pushed), pushed, redirect_uri="https://evil.example/cb")
    assert refused.value.error == "invalid_grant"


async def test_bad_client_assertions_are_refused(world: World, police: PortalClient) -> None:
    params, *_ = police.request_params()
    stranger = ec.generate_private_key(ec.SECP256R1())
    past = int(time.time()) - 600
    for bad in (
        assertion(police, key=stranger),
        assertion(police, aud="https://other-provider.example"),
        assertion(police, iat=past, exp=past + 60),
        assertion(police, exp=int(time.time()) + 7200),
        assertion(police, sub="someone-else"),
        assertion(police, jti=None),
    ):
        assert oauth_error(await police.push_raw({**params, **bad}, signed=False)) == (401, "invalid_client")
    assert oauth_error(await police.push_raw(params, signed=False)) == (401, "invalid_client")
    mismatched = {**params, "client_id": "ptl_someone_else", **assertion(police)}
    assert oauth_error(await police.push_raw(mismatched, signed=False)) == (401, "invalid_client")


async def test_an_assertion_for_the_issuer_is_accepted_but_never_twice(world: World, police: PortalClient) -> None:
    params, *_ = police.request_params()
    once = assertion(police)
    assert (await police.push_raw({**params, **once}, signed=False)).status_code == 201
    replay = await police.push_raw({**params, **once}, signed=False)
    assert oauth_error(replay) == (401, "invalid_client")
    assert "used already" in replay.json()["error_description"]


async def test_an_assertion_is_refused_for_any_audience_but_the_issuer_alone(
    world: World, police: PortalClient
) -> None:
    params, *_ = police.request_params()
    for audience in (
        police.metadata["pushed_authorization_request_endpoint"],  # the endpoint called
        police.metadata["token_endpoint"],
        [BASE],  # the issuer, but as a list
        [BASE, "https://other-provider.example"],  # one assertion good at two providers
        BASE + "/",
    ):
        refused = await police.push_raw({**params, **assertion(police, aud=audience)}, signed=False)
        assert oauth_error(refused) == (401, "invalid_client"), audience
        assert "aud" in refused.json()["error_description"]
    assert (await police.push_raw({**params, **assertion(police, aud=BASE)}, signed=False)).status_code == 201


async def test_an_expired_login_request_is_refused(world: World, police: PortalClient) -> None:
    device = await world.device()
    _, login_id = await start_login(world, police)
    world.clock.advance(121)
    assert problem(await world.signed(device, "GET", f"/v1/logins/{login_id}")) == (410, "login_expired")
    answer = await world.signed(device, "POST", f"/v1/logins/{login_id}/approve", {})
    assert problem(answer) == (410, "login_expired")


async def test_a_wrong_number_is_refused_and_ends_the_login(world: World, police: PortalClient) -> None:
    device = await world.device()
    pushed = await police.push(prompt="login", display="page")
    page = (await world.client.get(police.authorize_url(pushed))).text
    number = int(page.split('<p id="number"')[1].split(">", 1)[1].split("<", 1)[0])
    status_url = page.split('data-status-url="')[1].split('"', 1)[0]
    secret = page.split('data-secret="')[1].split('"', 1)[0]
    login_id = status_url.split("/")[3]
    wrong = 10 + (number - 10 + 1) % 90
    refused = await world.signed(device, "POST", f"/v1/logins/{login_id}/approve", {"number": wrong})
    assert problem(refused) == (403, "number_mismatch")
    late = await world.signed(device, "POST", f"/v1/logins/{login_id}/approve", {"number": number})
    assert problem(late) == (409, "login_closed")
    ended = (await world.client.get(status_url, headers={"Ecard-Login-Secret": secret})).json()
    assert ended["status"] == "failed"
    assert "error=access_denied" in ended["redirect_uri"]
    assert "code=" not in ended["redirect_uri"]


async def test_a_cross_device_login_without_the_number_is_refused(world: World, police: PortalClient) -> None:
    device = await world.device()
    pushed = await police.push(prompt="login", display="page")
    page = (await world.client.get(police.authorize_url(pushed))).text
    login_id = page.split('data-status-url="')[1].split('"', 1)[0].split("/")[3]
    refused = await world.signed(device, "POST", f"/v1/logins/{login_id}/approve", {})
    assert problem(refused) == (403, "number_mismatch")


@pytest.mark.parametrize("status", ["suspended", "cancelled"])
async def test_a_suspended_or_cancelled_card_cannot_log_in(world: World, police: PortalClient, status: str) -> None:
    device = await world.device()
    _, login_id = await start_login(world, police)
    assert (await world.set_status(device.ids["card_id"], status)).status_code == 200
    answer = await world.signed(device, "POST", f"/v1/logins/{login_id}/approve", {})
    assert problem(answer) == (403, f"card_{status}")


async def test_a_card_suspended_after_approval_gets_no_tokens(world: World, police: PortalClient) -> None:
    device = await world.device()
    pushed, login_id = await start_login(world, police)
    redirect = (await world.signed(device, "POST", f"/v1/logins/{login_id}/approve", {})).json()["redirect_uri"]
    assert (await world.set_status(device.ids["card_id"], "suspended")).status_code == 200
    with pytest.raises(OAuthError) as refused:
        await police.redeem(police.callback(redirect, pushed), pushed)
    assert refused.value.error == "invalid_grant"


async def test_claims_beyond_the_registration_are_never_released(world: World, library: PortalClient) -> None:
    device = await world.device()
    pushed, login_id = await start_login(world, library, scope="openid name id_number region card_status")
    shown = await world.signed(device, "GET", f"/v1/logins/{login_id}")
    assert shown.json()["claims"] == ["region"]
    redirect = (await world.signed(device, "POST", f"/v1/logins/{login_id}/approve", {})).json()["redirect_uri"]
    token = await library.redeem(library.callback(redirect, pushed), pushed)
    claims = await library.id_token_claims(token["id_token"], pushed)
    assert not {"name", "id_number", "card_status"} & claims.keys()
    info = (await library.userinfo(token["access_token"])).json()
    assert info == {"sub": claims["sub"], "region": "cq"}


async def test_unknown_scopes_and_response_types_are_refused(world: World, police: PortalClient) -> None:
    params, *_ = police.request_params(scope="openid offline_access")
    assert oauth_error(await police.push_raw(params)) == (400, "invalid_scope")
    params, *_ = police.request_params(scope="profile")
    assert oauth_error(await police.push_raw(params)) == (400, "invalid_scope")
    params, *_ = police.request_params()
    assert oauth_error(await police.push_raw({**params, "response_type": "code id_token"})) == (
        400,
        "unsupported_response_type",
    )
    assert oauth_error(await police.push_raw({**params, "request": "eyJ.eyJ.sig"})) == (400, "invalid_request")


async def test_tokens_are_bound_to_their_portal(world: World, police: PortalClient, library: PortalClient) -> None:
    device = await world.device()
    pushed, login_id = await start_login(world, police)
    redirect = (await world.signed(device, "POST", f"/v1/logins/{login_id}/approve", {})).json()["redirect_uri"]
    code = police.callback(redirect, pushed)
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": police.redirect_uri,
        "code_verifier": pushed.verifier,
    }
    assert oauth_error(await library.token_raw(form)) == (400, "invalid_grant")
    pushed, login_id = await start_login(world, police)
    redirect = (await world.signed(device, "POST", f"/v1/logins/{login_id}/approve", {})).json()["redirect_uri"]
    token = await police.redeem(police.callback(redirect, pushed), pushed)
    assert (await library.revoke(token["access_token"])).status_code == 200
    assert (await police.userinfo(token["access_token"])).status_code == 200


async def test_only_the_cards_own_device_reads_its_logins(world: World, police: PortalClient) -> None:
    device, other = await world.device(), await world.device("王五")
    answer = await world.signed(other, "GET", f"/v1/cards/{device.ids['card_id']}/logins")
    assert problem(answer) == (403, "forbidden")
    assert problem(await world.signed(device, "GET", "/v1/logins/lgn_unknown")) == (404, "login_not_found")
    unsigned = await world.client.post("/v1/logins/lgn_unknown/approve", json={})
    assert problem(unsigned)[0] == 401


async def test_two_answers_at_once_give_one_code(world: World, police: PortalClient) -> None:
    device = await world.device()
    _, login_id = await start_login(world, police)
    path = f"/v1/logins/{login_id}"
    answers = await asyncio.gather(
        *(world.signed(device, "POST", f"{path}/approve", {}) for _ in range(5)),
        world.signed(device, "POST", f"{path}/deny", {}),
    )
    assert sorted(a.status_code for a in answers) == [200, 409, 409, 409, 409, 409]
    assert all(problem(a) == (409, "login_closed") for a in answers if a.status_code != 200)
    history = await world.signed(device, "GET", f"/v1/cards/{device.ids['card_id']}/logins")
    assert len(history.json()["items"]) == 1


async def test_revoking_an_unknown_token_is_no_error(world: World, police: PortalClient) -> None:
    assert (await police.revoke("not-a-token")).status_code == 200
