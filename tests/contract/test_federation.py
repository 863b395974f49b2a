"""API.md, "Federation (川渝互通, 渝快码)": partners, issuer-to-issuer verification, the joint list, 渝快码 links.

Against live installations on loopback: `cq` (ours), its partner `sc`, and the 渝快办 stand-in (`ykb`).
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from ecard.kit.jwk import thumbprint
from ecard.kit.signing import sign_request
from tests.contract.installation import Installation, installed
from tests.contract.support import Integrator, problem_of
from tests.live import LiveWorld
from tests.support import ed25519_actor

JOINT = "wl-030"  # 图书馆: on the Sichuan–Chongqing joint list
CHONGQING_ONLY = "wl-011"  # 宾旅馆住宿


@pytest.fixture(scope="module")
def installation(service_urls: tuple[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installation]:
    with installed(service_urls, tmp_path_factory.mktemp("contract-federation"), "contract") as running:
        yield running


@pytest.fixture
async def cq(installation: Installation) -> AsyncIterator[Integrator]:
    async with httpx.AsyncClient(base_url=installation.cq.base, timeout=10.0) as client:
        yield Integrator(LiveWorld(installation.cq, client))


@pytest.fixture
async def sc(installation: Installation) -> AsyncIterator[Integrator]:
    async with httpx.AsyncClient(base_url=installation.sc.base, timeout=10.0) as client:
        yield Integrator(LiveWorld(installation.sc, client))


async def test_get_issuer_request_keys_is_a_jwk_set_whose_keys_carry_kid(cq: Integrator) -> None:
    """The partner publishes at its `GET /v1/issuer/request-keys` (a JWK set whose keys carry `kid`)."""
    answer = await cq.client.get("/v1/issuer/request-keys")

    assert answer.status_code == 200, answer.text
    keys = answer.json()["keys"]
    assert keys
    assert all(key["kid"] and key["kty"] for key in keys)


async def test_post_admin_partners_answers_partner_id_and_key_id_issuer_colon_kid(
    installation: Installation, sc: Integrator
) -> None:
    """`POST /v1/admin/partners` `{"issuer","name","base_url","public_key":<JWK>}` → 201 `{"partner_id","key_id"}`;
    issuer-to-issuer requests use `keyid="<issuer>:<kid>"`, and the `key_id` answered is that string."""
    async with httpx.AsyncClient(base_url=installation.yukuai.base) as platform:
        published = (await platform.get("/v1/issuer/request-keys")).json()["keys"][0]
    body = {"issuer": "ykb", "name": "渝快办", "base_url": installation.yukuai.base, "public_key": published}

    answer = await sc.admin("POST", "/v1/admin/partners", body)

    assert answer.status_code == 201, answer.text
    assert answer.json()["partner_id"]
    assert answer.json()["key_id"] == f"ykb:{published['kid']}"


async def test_post_federation_verifications_answers_as_v1_verifications(cq: Integrator) -> None:
    """`POST /v1/federation/verifications` (partner-signed) `{"code","item_code","merchant":{"id","name","region"},
    "terminal_id","place"}` → the same answer and refusals as `/v1/verifications`, decided by the issuer of the code."""
    partner = ed25519_actor()
    jwk = {**partner.jwk, "kid": thumbprint(partner.jwk)}
    registered = await cq.admin(
        "POST",
        "/v1/admin/partners",
        {"issuer": "gz", "name": "贵州省电子社保卡", "base_url": "http://127.0.0.1:9", "public_key": jwk},
    )
    assert registered.status_code == 201, registered.text
    partner.key_id = registered.json()["key_id"]
    # the library item joins Guizhou's list too: the partner's merchants may check cards for it
    item = (await cq.client.get(f"/v1/catalog/items/{JOINT}")).json()
    joint = await cq.admin("PUT", f"/v1/admin/catalog/items/{JOINT}", {**item, "regions": ["cq", "gz", "sc"]})
    assert joint.status_code == 200, joint.text
    phone = await cq.phone("赵小六")
    body = {
        "code": await cq.code(phone),
        "item_code": JOINT,
        "merchant": {"id": "gz-lib-1", "name": "贵阳市图书馆", "region": "gz"},
        "terminal_id": "gate-3",
        "place": {"name": "贵阳市图书馆", "address": "贵阳市观山湖区", "region": "gz", "lat": 26.6, "lon": 106.6},
    }
    raw = json.dumps(body, ensure_ascii=False).encode()
    url = f"{cq.client.base_url}/v1/federation/verifications"

    def headers() -> dict[str, str]:
        signed = sign_request("POST", url, raw, partner.key, partner.key_id, partner.alg)
        return {"Content-Type": "application/json", **signed}

    answer = await cq.client.post("/v1/federation/verifications", content=raw, headers=headers())
    again = await cq.client.post("/v1/federation/verifications", content=raw, headers=headers())

    assert answer.status_code == 200, answer.text
    assert answer.json()["result"] == "accepted"
    assert set(answer.json()["card"]) == {"pseudonym", "name_masked", "region"}
    assert answer.json()["card"]["name_masked"] == "赵*六"
    assert problem_of(again) == (409, "code_already_used")


async def test_a_terminal_never_needs_to_know_which_issuer_made_a_code(cq: Integrator, sc: Integrator) -> None:
    """A terminal never needs to know which issuer made a code: its own instance forwards it; items shared across
    partners are those whose `regions` include both issuers."""
    library = await cq.merchant([JOINT])
    citizen = await sc.phone("李小明", region="sc")

    answer = await cq.verify(library, await sc.code(citizen), JOINT)

    assert answer.status_code == 200, answer.text
    assert answer.json()["result"] == "accepted"
    assert answer.json()["card"]["region"] == "sc"
    assert answer.json()["card"]["name_masked"] == "李*明"


async def test_an_item_not_shared_with_the_partner_is_item_not_in_joint_list(cq: Integrator, sc: Integrator) -> None:
    """Another item: `item_not_in_joint_list`."""
    hotel = await cq.merchant([CHONGQING_ONLY], name="武隆仙女山酒店")
    citizen = await sc.phone(region="sc")

    assert problem_of(await cq.verify(hotel, await sc.code(citizen), CHONGQING_ONLY))[1] == "item_not_in_joint_list"


async def _account(installation: Installation, name: str, id_number: str | None = None) -> str:
    """The stand-in's `POST /test/accounts` `{"account_id","name"}` → 201 (with the optional `id_number` of the
    platform's real-name record, which a link is checked against)."""
    account_id = f"ykb-{secrets.token_hex(6)}"
    body = {"account_id": account_id, "name": name}
    if id_number is not None:
        body["id_number"] = id_number
    async with httpx.AsyncClient(base_url=installation.yukuai.base) as platform:
        made = await platform.post("/test/accounts", json=body)
    assert made.status_code == 201, made.text
    return account_id


async def _link_token(installation: Installation, account_id: str) -> str:
    """What the 渝快办 app hands its logged-in user to prove the account (docs/yukuai-protocol.md)."""
    async with httpx.AsyncClient(base_url=installation.yukuai.base) as platform:
        issued = await platform.post(f"/test/accounts/{account_id}/link-tokens")
    assert issued.status_code == 201, issued.text
    token: str = issued.json()["link_token"]
    return token


async def _ykm(installation: Installation, account_id: str) -> str:
    """The stand-in's `POST /test/accounts/{account_id}/codes` → 201 `{"code"}` (a fresh 渝快码)."""
    async with httpx.AsyncClient(base_url=installation.yukuai.base) as platform:
        minted = await platform.post(f"/test/accounts/{account_id}/codes")
    assert minted.status_code == 201, minted.text
    code: str = minted.json()["code"]
    return code


async def test_a_linked_yukuai_code_is_the_card_and_no_link_is_card_not_linked(
    installation: Installation, cq: Integrator
) -> None:
    """`PUT /v1/cards/{card_id}/links/yukuai` (device-signed) `{"account_id","consent":true}` → 200; `DELETE` the same
    path revokes it. A 渝快码 presented to `/v1/verifications` (prefix `YKM:`) is resolved to the linked card; no link
    gives 403 `card_not_linked`.

    The one deliberate difference from API.md (issue 11, H2; docs/contract-notes.md "Peers"): the request needs the
    platform's proof that the account is the holder's, `link_token`; API.md's two fields alone are refused 400
    `link_token_required`, so that nobody links their card to another person's account."""
    library = await cq.merchant([JOINT])
    phone = await cq.phone("张小三")
    account_id = await _account(installation, "张小三", phone.ids["id_number"])
    path = f"/v1/cards/{phone.ids['card_id']}/links/yukuai"
    unlinked = await cq.verify(library, await _ykm(installation, account_id), JOINT)

    bare = await cq.signed(phone, "PUT", path, {"account_id": account_id, "consent": True})
    assert problem_of(bare) == (400, "link_token_required")
    proof = await _link_token(installation, account_id)
    linked = await cq.signed(phone, "PUT", path, {"account_id": account_id, "consent": True, "link_token": proof})
    code = await _ykm(installation, account_id)
    accepted = await cq.verify(library, code, JOINT)
    revoked = await cq.signed(phone, "DELETE", path)
    after = await cq.verify(library, await _ykm(installation, account_id), JOINT)

    assert code.startswith("YKM:")
    assert problem_of(unlinked) == (403, "card_not_linked")
    assert linked.status_code == 200, linked.text
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["card"]["name_masked"] == "张*三"
    assert revoked.status_code == 200, revoked.text
    assert problem_of(after) == (403, "card_not_linked")


async def test_the_yukuai_platform_verifies_ecard_codes_at_its_venues_as_partner_ykb(
    installation: Installation, cq: Integrator
) -> None:
    """The 渝快办 platform verifies e-card codes at its own venues as a partner (issuer `ykb`) through
    `/v1/federation/verifications`."""
    phone = await cq.phone("赵小六")
    ask = {
        "ecard_url": installation.cq.base,
        "code": await cq.code(phone),
        "item_code": JOINT,
        "merchant": {"id": "ykb-hall-1", "name": "渝快办武隆服务大厅", "region": "cq"},
    }
    async with httpx.AsyncClient(base_url=installation.yukuai.base, timeout=10.0) as platform:
        answer = (await platform.post("/test/verifications", json=ask)).json()

    assert answer["status"] == 200, answer
    assert answer["body"]["result"] == "accepted"
    history = await cq.signed(phone, "GET", f"/v1/cards/{phone.ids['card_id']}/verifications")
    assert [(e["merchant_name"], e["via_issuer"]) for e in history.json()["items"]] == [("渝快办武隆服务大厅", "ykb")]


async def test_a_partner_that_must_be_asked_and_cannot_be_reached_is_issuer_unavailable(
    installation: Installation, cq: Integrator, sc: Integrator
) -> None:
    """503 `issuer_unavailable` when a partner issuer that must be asked cannot be reached (never an accept)."""
    library = await cq.merchant([JOINT])
    citizen = await sc.phone(region="sc")
    code = await sc.code(citizen)
    installation.sc.stop()
    try:
        answer = await cq.verify(library, code, JOINT)
    finally:
        installation.sc.start()

    assert problem_of(answer) == (503, "issuer_unavailable")
    assert answer.headers["Retry-After"]
    # and it heals once the partner is back (its circuit breaker lets a trial through after the cool-down)
    for _ in range(30):
        healed = await cq.verify(library, code, JOINT)
        if healed.status_code != 503:
            break
        await asyncio.sleep(0.5)
    assert healed.status_code == 200, healed.text
