"""API.md, "Operators": the operator command, sessions, cardholders, merchants, channels and card status."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from tests.contract.support import Integrator, problem_of
from tests.support import World, ecard_cli, ed25519_actor, id_number, p256_actor, totp_now


async def test_ecard_operator_add_prints_username_password_and_totp_uri(world: World) -> None:
    """`ecard operator add --username U` prints JSON `{"username", "password", "totp_uri"}`."""
    run = await ecard_cli(world, "operator", "add", "--username", "chen_jing")

    assert run.returncode == 0, run.stderr
    made = json.loads(run.stdout)
    assert made["username"] == "chen_jing"
    assert isinstance(made["password"], str)
    assert len(made["password"]) >= 12
    assert made["totp_uri"].startswith("otpauth://")


async def test_ecard_operator_add_with_a_password_keeps_it(world: World) -> None:
    """The password is generated unless `--password` is given."""
    run = await ecard_cli(world, "operator", "add", "--username", "li_na", "--password", "Wulong-2025-karst!")

    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["password"] == "Wulong-2025-karst!"


async def test_post_admin_sessions_answers_201_token_and_expires_at(world: World) -> None:
    """`POST /v1/admin/sessions` `{"username","password","totp"}` → 201 `{"token","expires_at"}`;
    later admin calls send `Authorization: Bearer <token>`."""
    made = json.loads((await ecard_cli(world, "operator", "add", "--username", "wang_fang")).stdout)

    answer = await world.client.post(
        "/v1/admin/sessions",
        json={"username": "wang_fang", "password": made["password"], "totp": totp_now(made["totp_uri"])},
    )

    assert answer.status_code == 201, answer.text
    assert {"token", "expires_at"} <= answer.json().keys()
    datetime.fromisoformat(answer.json()["expires_at"])
    later = await world.client.get("/v1/admin/depth", headers={"Authorization": f"Bearer {answer.json()['token']}"})
    assert later.status_code == 200, later.text
    assert problem_of(await world.client.get("/v1/admin/depth")) == (401, "unauthorized")


@pytest.mark.parametrize("region", ["cq", "sc"])
async def test_post_admin_cardholders_answers_201_with_card_id(api: Integrator, region: str) -> None:
    """`POST /v1/admin/cardholders` `{"name","id_number","region","card_serial"}` → 201 `{"card_id", ...}`."""
    body = {"name": "张小三", "id_number": id_number(), "region": region, "card_serial": f"CQ-2025-{region}-1"}

    answer = await api.admin("POST", "/v1/admin/cardholders", body)

    assert answer.status_code == 201, answer.text
    assert answer.json()["card_id"].startswith("crd_")


@pytest.mark.parametrize(
    "items",
    [["wl-011"], ["wl-030"], ["wl-043"], ["wl-022"], ["wl-001"], ["wl-030", "wl-043", "wl-022"]],
    ids=["hotel", "library", "payment", "disbursement", "all-functions", "mixed"],
)
async def test_post_admin_merchants_with_exactly_api_md_fields_registers_for_any_items(
    api: Integrator, items: list[str]
) -> None:
    """`POST /v1/admin/merchants` `{"name","region","items":[item codes],"public_key":<JWK>}` → 201
    `{"merchant_id","key_id", ...}` (a request with exactly these fields registers a merchant for any items,
    whatever their functions)."""
    key = ed25519_actor()
    body = {"name": "武隆区便民服务中心", "region": "cq", "items": items, "public_key": key.jwk}

    answer = await api.admin("POST", "/v1/admin/merchants", body)

    assert answer.status_code == 201, answer.text
    assert answer.json()["merchant_id"].startswith("mch_")
    assert answer.json()["key_id"]
    assert sorted(answer.json()["items"]) == sorted(items)


async def test_post_admin_channels_answers_201_channel_id_and_key_id(api: Integrator) -> None:
    """`POST /v1/admin/channels` `{"name","public_key":<JWK>}` → 201 `{"channel_id","key_id"}`."""
    answer = await api.admin("POST", "/v1/admin/channels", {"name": "重庆农商行App", "public_key": ed25519_actor().jwk})

    assert answer.status_code == 201, answer.text
    assert {"channel_id", "key_id"} <= answer.json().keys()


@pytest.mark.parametrize("status", ["suspended", "active", "cancelled"])
async def test_post_admin_card_status_answers_200(api: Integrator, status: str) -> None:
    """`POST /v1/admin/cards/{card_id}/status` `{"status":"active"|"suspended"|"cancelled","reason"}` → 200."""
    holder = await api.cardholder()

    answer = await api.card_status(holder["card_id"], status)

    assert answer.status_code == 200, answer.text


async def test_public_keys_are_ed25519_or_p256_jwks(api: Integrator) -> None:
    """Public keys are JWKs (RFC 7517): `{"kty":"OKP","crv":"Ed25519","x":...}` or
    `{"kty":"EC","crv":"P-256","x":...,"y":...}`."""
    ed, p256 = ed25519_actor(), p256_actor()
    assert ed.jwk.keys() == {"kty", "crv", "x"}
    assert p256.jwk.keys() == {"kty", "crv", "x", "y"}

    for actor in (ed, p256):
        registered = await api.merchant(["wl-030"], actor=actor)
        phone = await api.phone()
        answer = await api.verify(registered, await api.code(phone), "wl-030")
        assert answer.status_code == 200, answer.text
    refused = await api.admin(
        "POST", "/v1/admin/channels", {"name": "x", "public_key": {"kty": "RSA", "n": "AQAB", "e": "AQAB"}}
    )
    assert problem_of(refused) == (400, "invalid_request")
