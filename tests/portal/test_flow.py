"""A portal logs a citizen in with a stock OpenID Connect client: same device, and across devices by QR."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

from tests.portal.conftest import BASE
from tests.portal.oidc import PortalClient, same_device_login
from tests.support import World, problem


async def test_same_device_login_from_discovery_to_revocation(world: World, police: PortalClient) -> None:
    device = await world.device("张小三")
    pushed = await police.push()
    assert pushed.request_uri.startswith("urn:ietf:params:oauth:request_uri:")
    assert 60 <= pushed.expires_in <= 90

    answer = await world.client.get(police.authorize_url(pushed))
    assert answer.status_code == 302
    login_id = dict(parse_qsl(urlsplit(answer.headers["location"]).query))["login_id"]

    shown = await world.signed(device, "GET", f"/v1/logins/{login_id}")
    assert shown.status_code == 200, shown.text
    assert shown.json()["portal_name"] == "警快办"
    assert shown.json()["claims"] == ["name", "id_number"]
    assert shown.json()["number_required"] is False

    approved = await world.signed(device, "POST", f"/v1/logins/{login_id}/approve", {})
    assert approved.status_code == 200, approved.text
    code = police.callback(approved.json()["redirect_uri"], pushed)

    token = await police.redeem(code, pushed)
    assert token["token_type"].lower() == "bearer"
    assert 0 < token["expires_in"] <= 300
    claims = await police.id_token_claims(token["id_token"], pushed)
    assert claims["name"] == "张小三"
    assert claims["id_number"] == device.ids["id_number"]
    assert claims["amr"] == ["hwk"]
    assert claims["exp"] - claims["iat"] <= 600
    assert "region" not in claims

    info = await police.userinfo(token["access_token"])
    assert info.status_code == 200, info.text
    assert info.json() == {"sub": claims["sub"], "name": "张小三", "id_number": device.ids["id_number"]}
    posted = await world.client.post(
        police.metadata["userinfo_endpoint"], headers={"Authorization": f"Bearer {token['access_token']}"}
    )
    assert posted.json() == info.json()

    revoked = await police.revoke(token["access_token"])
    assert revoked.status_code == 200
    after = await police.userinfo(token["access_token"])
    assert after.status_code == 401
    assert after.json()["error"] == "invalid_token"
    assert "invalid_token" in after.headers["www-authenticate"]

    history = await world.signed(device, "GET", f"/v1/cards/{device.ids['card_id']}/logins")
    assert history.status_code == 200, history.text
    [entry] = history.json()["items"]
    assert entry["portal_name"] == "警快办"
    assert entry["claims"] == ["name", "id_number"]
    assert entry["outcome"] == "approved"
    assert entry["cross_device"] is False


async def test_police_gets_name_and_id_number_a_library_only_a_pairwise_subject_and_region(
    world: World, police: PortalClient, library: PortalClient
) -> None:
    device = await world.device("李四")
    pushed, redirect = await same_device_login(world, police, device)
    police_claims = await police.id_token_claims(
        (await police.redeem(police.callback(redirect, pushed), pushed))["id_token"], pushed
    )
    pushed, redirect = await same_device_login(world, library, device)
    token = await library.redeem(library.callback(redirect, pushed), pushed)
    library_claims = await library.id_token_claims(token["id_token"], pushed)

    assert police_claims["name"] == "李四"
    assert police_claims["id_number"] == device.ids["id_number"]
    assert library_claims["region"] == "cq"
    assert not {"name", "id_number", "card_status"} & library_claims.keys()
    assert library_claims["sub"] != police_claims["sub"]
    info = (await library.userinfo(token["access_token"])).json()
    assert info == {"sub": library_claims["sub"], "region": "cq"}

    # the same person keeps the same subject at one portal, login after login
    pushed, redirect = await same_device_login(world, police, device)
    again = await police.id_token_claims(
        (await police.redeem(police.callback(redirect, pushed), pushed))["id_token"], pushed
    )
    assert again["sub"] == police_claims["sub"]
    other = await world.device("李四")
    pushed, redirect = await same_device_login(world, police, other)
    someone_else = await police.id_token_claims(
        (await police.redeem(police.callback(redirect, pushed), pushed))["id_token"], pushed
    )
    assert someone_else["sub"] != police_claims["sub"]


async def test_cross_device_login_with_the_pages_number(world: World, police: PortalClient) -> None:
    device = await world.device()
    pushed = await police.push(prompt="login", display="page")
    page = await world.client.get(police.authorize_url(pushed))
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp
    assert "unsafe-inline" not in csp
    assert 'src="data:image/png;base64,' in page.text
    number = int(page.text.split('<p id="number"')[1].split(">", 1)[1].split("<", 1)[0])
    assert 10 <= number <= 99
    status_url = page.text.split('data-status-url="')[1].split('"', 1)[0]
    secret = page.text.split('data-secret="')[1].split('"', 1)[0]
    login_id = status_url.split("/")[3]

    waiting = await world.client.get(status_url, headers={"Ecard-Login-Secret": secret})
    assert waiting.json() == {"status": "pending"}
    stranger = await world.client.get(status_url, headers={"Ecard-Login-Secret": "guess"})
    assert problem(stranger) == (404, "login_not_found")

    shown = await world.signed(device, "GET", f"/v1/logins/{login_id}")
    assert shown.json()["number_required"] is True
    assert "number" not in shown.json()

    approved = await world.signed(device, "POST", f"/v1/logins/{login_id}/approve", {"number": number})
    assert approved.status_code == 200, approved.text
    done = (await world.client.get(status_url, headers={"Ecard-Login-Secret": secret})).json()
    assert done["status"] == "approved"
    assert done["redirect_uri"] == approved.json()["redirect_uri"]
    token = await police.redeem(police.callback(done["redirect_uri"], pushed), pushed)
    assert (await police.id_token_claims(token["id_token"], pushed))["name"] == "张小三"

    history = await world.signed(device, "GET", f"/v1/cards/{device.ids['card_id']}/logins")
    assert history.json()["items"][0]["cross_device"] is True


async def test_declining_sends_the_portal_access_denied(world: World, police: PortalClient) -> None:
    device = await world.device()
    pushed = await police.push()
    answer = await world.client.get(police.authorize_url(pushed))
    login_id = dict(parse_qsl(urlsplit(answer.headers["location"]).query))["login_id"]
    denied = await world.signed(device, "POST", f"/v1/logins/{login_id}/deny", {})
    assert denied.status_code == 200, denied.text
    params = dict(parse_qsl(urlsplit(denied.json()["redirect_uri"]).query))
    assert params["error"] == "access_denied"
    assert params["state"] == pushed.state
    assert params["iss"] == BASE
    assert "code" not in params
    again = await world.signed(device, "POST", f"/v1/logins/{login_id}/approve", {})
    assert problem(again) == (409, "login_closed")
    history = await world.signed(device, "GET", f"/v1/cards/{device.ids['card_id']}/logins")
    assert history.json()["items"][0]["outcome"] == "denied"
