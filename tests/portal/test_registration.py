"""Operators register portals; discovery and the JWKS tell a portal everything else; the signing key rotates."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jwt
from joserfc.jwk import KeySet

from ecard.kit.jwk import private_jwk
from ecard.seed import DEMO_PORTAL_REDIRECT, seed_demo
from tests.portal.conftest import BASE, POLICE_CALLBACK
from tests.portal.oidc import PortalClient, same_device_login
from tests.support import World, ecard_cli, ed25519_actor, p256_actor, problem


def portal_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "警快办",
        "redirect_uris": [POLICE_CALLBACK, "cn.gov.cq.jkb:/oauth/callback", "http://127.0.0.1:8765/cb"],
        "jwks": {"keys": [p256_actor().jwk]},
        "claims": ["name", "id_number"],
        "allowed_items": ["wl-010"],
    }
    body.update(changes)
    return body


async def test_an_operator_registers_a_portal_and_lists_it(world: World) -> None:
    answer = await world.admin("POST", "/v1/admin/portals", portal_body())
    assert answer.status_code == 201, answer.text
    client_id = answer.json()["client_id"]
    assert client_id.startswith("ptl_")
    listed = await world.admin("GET", "/v1/admin/portals")
    assert [p["client_id"] for p in listed.json()["items"]] == [client_id]
    assert listed.json()["items"][0]["claims"] == ["name", "id_number"]
    assert await world.audit_intact()
    async with world.app.state.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM audit_log WHERE action = 'portal.registered'") == 1
    assert problem(await world.client.get("/v1/admin/portals")) == (401, "unauthorized")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"redirect_uris": ["http://jkb.example/cb"]}, "redirect_uris"),
        ({"redirect_uris": ["https://jkb.example/cb#top"]}, "redirect_uris"),
        ({"redirect_uris": ["javascript:alert(1)"]}, "redirect_uris"),
        ({"redirect_uris": []}, "redirect_uris"),
        ({"jwks": {"keys": [{**private_jwk(ec.generate_private_key(ec.SECP256R1()))}]}}, "jwks"),
        ({"jwks": {"keys": [ed25519_actor().jwk]}}, "jwks"),
        ({"jwks": {"keys": []}}, "jwks"),
        ({"jwks": {"keys": [{"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA"}]}}, "jwks"),
        ({"claims": ["name", "phone"]}, "claims"),
        ({"claims": ["name"], "allowed_items": ["wl-030"]}, "claims"),
        ({"allowed_items": ["wl-008"]}, "allowed_items"),
        ({"name": " "}, "name"),
    ],
)
async def test_registration_refuses_what_a_portal_may_not_have(
    world: World, changes: dict[str, Any], field: str
) -> None:
    answer = await world.admin("POST", "/v1/admin/portals", portal_body(**changes))
    assert problem(answer) == (400, "invalid_request")
    assert answer.json()["fields"] == [field]


async def test_unknown_items_and_unknown_fields_are_refused(world: World) -> None:
    answer = await world.admin("POST", "/v1/admin/portals", portal_body(allowed_items=["wl-999"]))
    assert problem(answer) == (404, "item_unknown")
    answer = await world.admin("POST", "/v1/admin/portals", portal_body(client_secret="s3cret"))
    assert problem(answer) == (400, "invalid_request")


async def test_discovery_is_all_a_portal_needs(world: World) -> None:
    metadata = (await world.client.get("/.well-known/openid-configuration")).json()
    assert metadata["issuer"] == BASE
    for name in (
        "authorization_endpoint",
        "pushed_authorization_request_endpoint",
        "token_endpoint",
        "userinfo_endpoint",
        "jwks_uri",
        "revocation_endpoint",
    ):
        assert metadata[name].startswith(BASE + "/"), name
    assert metadata["require_pushed_authorization_requests"] is True
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    assert metadata["token_endpoint_auth_methods_supported"] == ["private_key_jwt"]
    assert metadata["response_types_supported"] == ["code"]
    assert metadata["subject_types_supported"] == ["pairwise"]
    assert metadata["authorization_response_iss_parameter_supported"] is True
    jwks = (await world.client.get(metadata["jwks_uri"])).json()
    [key] = jwks["keys"]
    assert key["kid"]
    assert key["alg"] == "ES256"
    assert "d" not in key


async def test_the_signing_key_rotates_and_old_id_tokens_still_verify(world: World, police: PortalClient) -> None:
    device = await world.device()
    pushed, redirect = await same_device_login(world, police, device)
    before = (await police.redeem(police.callback(redirect, pushed), pushed))["id_token"]

    run = await ecard_cli(world, "portals", "rotate-key")
    assert run.returncode == 0, run.stderr
    rotated = json.loads(run.stdout)["rotated_to"]
    await world.app.state.portal_provider.signing.refresh()

    pushed, redirect = await same_device_login(world, police, device)
    after = (await police.redeem(police.callback(redirect, pushed), pushed))["id_token"]
    published = (await world.client.get("/oauth2/jwks")).json()
    assert len(published["keys"]) == 2
    keys = KeySet.import_key_set(published)
    assert jwt.decode(after, keys, algorithms=["ES256"]).header["kid"] == rotated
    assert jwt.decode(before, keys, algorithms=["ES256"]).header["kid"] != rotated
    async with world.app.state.pool.acquire() as conn:
        assert (
            await conn.fetchval("SELECT subject FROM audit_log WHERE action = 'portal.signing_key.rotated'") == rotated
        )


async def test_the_command_line_registers_and_lists_portals(world: World, tmp_path: Path) -> None:
    key_file = tmp_path / "portal.jwk.json"
    key_file.write_text(json.dumps(p256_actor().jwk))
    run = await ecard_cli(
        world,
        "portals",
        "add",
        "--name",
        "警快办",
        "--redirect-uri",
        POLICE_CALLBACK,
        "--jwks",
        str(key_file),
        "--claims",
        "name,id_number",
        "--items",
        "wl-010",
    )
    assert run.returncode == 0, run.stderr
    client_id = json.loads(run.stdout)["client_id"]
    listed = await ecard_cli(world, "portals", "list")
    assert [p["client_id"] for p in json.loads(listed.stdout)["portals"]] == [client_id]
    refused = await ecard_cli(
        world, "portals", "add", "--name", "x", "--redirect-uri", "http://evil.example/cb", "--jwks", str(key_file),
        "--items", "wl-010",
    )  # fmt: skip
    assert refused.returncode == 2
    assert json.loads(refused.stderr)["error"] == "invalid_request"


async def test_the_demo_seeds_a_police_portal_with_a_private_key_file(world: World) -> None:
    settings = world.app.state.settings
    demo = await seed_demo(settings)
    assert demo is not None
    portal = demo["portal"]
    assert portal["redirect_uris"] == [DEMO_PORTAL_REDIRECT]
    assert portal["claims"] == ["name", "id_number", "region"]
    key_file = Path(portal["private_jwk"])
    assert stat.S_IMODE((await asyncio.to_thread(key_file.stat)).st_mode) == 0o600
    assert "d" in json.loads(await asyncio.to_thread(key_file.read_text))
    listed = (await world.admin("GET", "/v1/admin/portals")).json()["items"]
    assert [p["client_id"] for p in listed] == [portal["client_id"]]


async def test_openapi_publishes_the_portal_routes_with_their_refusals(world: World) -> None:
    answer = await world.client.get("/schema/openapi.json")
    assert answer.status_code == 200, answer.text
    paths = answer.json()["paths"]
    assert "invalid_client" in paths["/oauth2/par"]["post"]["responses"]["401"]["description"]
    assert "invalid_grant" in paths["/oauth2/token"]["post"]["responses"]["400"]["description"]
    approve = paths["/v1/logins/{login_id}/approve"]["post"]["responses"]
    assert "number_mismatch" in approve["403"]["description"]
    assert "login_expired" in approve["410"]["description"]
    assert "post" in paths["/v1/admin/portals"]
    assert "get" in paths["/v1/cards/{card_id}/logins"]
