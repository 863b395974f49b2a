"""The 渝快码: linked with consent, accepted at an e-card terminal as the card, refused once consent is withdrawn;
and the 渝快办 platform verifying e-card codes at its own venues as partner `ykb`."""

from __future__ import annotations

import secrets

import httpx

from tests.federation.conftest import Provinces
from tests.live import LiveWorld
from tests.support import Actor, problem

JOINT = "wl-030"


async def _account(provinces: Provinces, holder: Actor) -> str:
    """A real-name 渝快办 account of the card's holder."""
    account_id = f"ykb-{secrets.token_hex(6)}"
    real_name = {"account_id": account_id, "name": holder.ids["name"], "id_number": holder.ids["id_number"]}
    async with httpx.AsyncClient(base_url=provinces.yukuai.base) as platform:
        made = await platform.post("/test/accounts", json=real_name)
    assert made.status_code == 201, made.text
    return account_id


async def _token(provinces: Provinces, account_id: str, **ask: int) -> str:
    """The link token the 渝快办 app hands the account's logged-in user."""
    async with httpx.AsyncClient(base_url=provinces.yukuai.base) as platform:
        issued = await platform.post(f"/test/accounts/{account_id}/link-tokens", json=ask or None)
    assert issued.status_code == 201, issued.text
    token: str = issued.json()["link_token"]
    return token


async def _ykm(provinces: Provinces, account_id: str) -> str:
    async with httpx.AsyncClient(base_url=provinces.yukuai.base) as platform:
        minted = await platform.post(f"/test/accounts/{account_id}/codes")
    assert minted.status_code == 201, minted.text
    code: str = minted.json()["code"]
    assert code.startswith("YKM:")
    return code


async def _link(
    cq: LiveWorld, citizen: Actor, account_id: str, token: str | None, consent: bool = True
) -> httpx.Response:
    body: dict[str, object] = {"account_id": account_id, "consent": consent}
    if token is not None:
        body["link_token"] = token
    return await cq.signed(citizen, "PUT", f"/v1/cards/{citizen.ids['card_id']}/links/yukuai", body)


async def test_a_linked_yukuai_code_verifies_as_the_card_until_the_holder_withdraws_consent(
    provinces: Provinces, cq: LiveWorld
) -> None:
    library = await cq.merchant([JOINT], name="武隆区图书馆")
    citizen = await cq.device(name="张小三")
    account_id = await _account(provinces, citizen)

    # before any link, the platform knows the account but no card stands behind it
    assert problem(await cq.verify(library, await _ykm(provinces, account_id), JOINT)) == (403, "card_not_linked")

    linked = await _link(cq, citizen, account_id, await _token(provinces, account_id))
    assert linked.status_code == 200, linked.text
    assert linked.json()["status"] == "linked"
    assert linked.json()["consent_version"]
    assert linked.json()["consented_at"]

    code = await _ykm(provinces, account_id)
    answer = await cq.verify(library, code, JOINT)
    assert answer.status_code == 200, answer.text
    assert answer.json()["card"]["name_masked"] == "张*三"
    assert answer.json()["card"]["region"] == "cq"
    assert problem(await cq.verify(library, code, JOINT)) == (409, "code_already_used")

    # the holder sees it like any other check of the card
    history = await cq.signed(citizen, "GET", f"/v1/cards/{citizen.ids['card_id']}/verifications")
    assert [e["item_code"] for e in history.json()["items"]] == [JOINT]

    # the card's status governs the 渝快码 too
    assert (await cq.set_status(citizen.ids["card_id"], "suspended")).status_code == 200
    assert problem(await cq.verify(library, await _ykm(provinces, account_id), JOINT)) == (403, "card_suspended")
    assert (await cq.set_status(citizen.ids["card_id"], "active")).status_code == 200

    revoked = await cq.signed(citizen, "DELETE", f"/v1/cards/{citizen.ids['card_id']}/links/yukuai")
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["status"] == "revoked"
    assert problem(await cq.verify(library, await _ykm(provinces, account_id), JOINT)) == (403, "card_not_linked")


async def test_linking_needs_consent_a_token_for_that_account_and_the_holders_own_card(
    provinces: Provinces, cq: LiveWorld
) -> None:
    citizen, other = await cq.device(), await cq.device(name="李四")
    account_id = await _account(provinces, citizen)

    refused = await _link(cq, citizen, account_id, await _token(provinces, account_id), consent=False)
    assert problem(refused) == (400, "consent_required")
    assert problem(await _link(cq, citizen, "ykb-nobody", await _token(provinces, account_id))) == (
        403,
        "link_token_invalid",
    )
    other_card = await cq.signed(
        citizen,
        "PUT",
        f"/v1/cards/{other.ids['card_id']}/links/yukuai",
        {"account_id": account_id, "consent": True, "link_token": await _token(provinces, account_id)},
    )
    assert problem(other_card) == (403, "forbidden")
    assert (await _link(cq, citizen, account_id, await _token(provinces, account_id))).status_code == 200
    again = await _link(cq, citizen, account_id, await _token(provinces, account_id))
    assert again.status_code == 200  # asked again: the same link
    # one card stands for one account
    other_account = await _account(provinces, citizen)
    assert problem(await _link(cq, citizen, other_account, await _token(provinces, other_account))) == (
        409,
        "link_exists",
    )
    malformed = await cq.signed(
        citizen, "PUT", f"/v1/cards/{citizen.ids['card_id']}/links/yukuai", {"account_id": "a b", "consent": True}
    )
    assert problem(malformed) == (400, "invalid_request")


async def test_an_attacker_cannot_link_their_card_to_a_victims_account(provinces: Provinces, cq: LiveWorld) -> None:
    library = await cq.merchant([JOINT], name="武隆区图书馆")
    victim, attacker = await cq.device(name="王小红"), await cq.device(name="赵大力")
    victims_account, attackers_account = await _account(provinces, victim), await _account(provinces, attacker)

    # exactly API.md's request, naming the victim's account: no proof that the account is the attacker's
    bare = await cq.signed(
        attacker,
        "PUT",
        f"/v1/cards/{attacker.ids['card_id']}/links/yukuai",
        {"account_id": victims_account, "consent": True},
    )
    assert problem(bare) == (400, "link_token_required")
    assert bare.json()["fields"] == ["link_token"]
    # a genuine token, but for the attacker's own account
    own_token = await _token(provinces, attackers_account)
    assert problem(await _link(cq, attacker, victims_account, own_token)) == (403, "link_token_invalid")
    # a token the platform never issued
    assert problem(await _link(cq, attacker, victims_account, secrets.token_urlsafe(24))) == (
        403,
        "link_token_invalid",
    )
    # a token for the victim's account, talked out of the victim: the account's real name is not the card holder's
    phished = await _token(provinces, victims_account)
    assert problem(await _link(cq, attacker, victims_account, phished)) == (403, "identity_mismatch")
    # an expired token, even the victim's own
    expired = await _token(provinces, victims_account, expires_in_s=0)
    assert problem(await _link(cq, victim, victims_account, expired)) == (403, "link_token_invalid")

    # the victim links with a fresh token; nobody can use that token again, the victim included
    honest = await _token(provinces, victims_account)
    assert (await _link(cq, victim, victims_account, honest)).status_code == 200
    assert problem(await _link(cq, attacker, victims_account, honest)) == (403, "link_token_invalid")
    assert (await cq.signed(victim, "DELETE", f"/v1/cards/{victim.ids['card_id']}/links/yukuai")).status_code == 200
    assert problem(await _link(cq, victim, victims_account, honest)) == (403, "link_token_invalid")
    assert (await _link(cq, victim, victims_account, await _token(provinces, victims_account))).status_code == 200

    # the victim's 渝快码 discloses the victim, and the attacker's history shows none of the victim's movements
    answer = await cq.verify(library, await _ykm(provinces, victims_account), JOINT)
    assert answer.status_code == 200, answer.text
    assert answer.json()["card"]["name_masked"] == "王*红"
    attackers_history = await cq.signed(attacker, "GET", f"/v1/cards/{attacker.ids['card_id']}/verifications")
    assert attackers_history.json()["items"] == []
    victims_history = await cq.signed(victim, "GET", f"/v1/cards/{victim.ids['card_id']}/verifications")
    assert [e["item_code"] for e in victims_history.json()["items"]] == [JOINT]


async def test_unknown_yukuai_codes_are_refused_and_the_platform_answers_signed_requests_only(
    provinces: Provinces, cq: LiveWorld
) -> None:
    library = await cq.merchant([JOINT])
    assert problem(await cq.verify(library, "YKM:never-minted", JOINT)) == (400, "malformed_code")
    account_id = await _account(provinces, await cq.device())
    code = await _ykm(provinces, account_id)
    async with httpx.AsyncClient(base_url=provinces.yukuai.base) as stranger:
        # only the ecard whose request keys the platform trusts may resolve a 渝快码
        unsigned = await stranger.post("/v1/codes/resolve", json={"code": code})
    assert problem(unsigned) == (401, "signature_missing")


async def test_the_yukuai_platform_verifies_an_ecard_code_at_its_own_venue_as_partner_ykb(
    provinces: Provinces, cq: LiveWorld
) -> None:
    citizen = await cq.device(name="赵小六")
    code = await cq.code(citizen)
    venue = {"id": "ykb-hall-1", "name": "渝快办武隆服务大厅", "region": "cq"}
    async with httpx.AsyncClient(base_url=provinces.yukuai.base, timeout=10.0) as platform:
        ask = {"ecard_url": provinces.cq.base, "code": code, "item_code": JOINT, "merchant": venue}
        answer = (await platform.post("/test/verifications", json=ask)).json()
        assert answer["status"] == 200, answer
        assert answer["body"]["card"]["name_masked"] == "赵*六"
        again = (await platform.post("/test/verifications", json=ask)).json()
    assert (again["status"], again["body"]["code"]) == (409, "code_already_used")
    history = await cq.signed(citizen, "GET", f"/v1/cards/{citizen.ids['card_id']}/verifications")
    (entry,) = history.json()["items"]
    assert (entry["merchant_name"], entry["via_issuer"]) == ("渝快办武隆服务大厅", "ykb")
