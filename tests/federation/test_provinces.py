"""川渝互通: a Sichuan code at a Chongqing terminal and the reverse, between two live issuers on loopback."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time

import httpx

from tests.federation.conftest import Provinces
from tests.live import LiveWorld
from tests.support import ed25519_actor, problem

JOINT = "wl-030"  # 图书馆入馆、借阅: on the Sichuan–Chongqing joint list
CHONGQING_ONLY = "wl-011"  # 宾旅馆住宿: Chongqing's list only


async def partner_calls(world: LiveWorld, issuer: str = "sc") -> dict[str, float]:
    """The live service's count of its calls to a partner, by outcome, as /metrics shows them."""
    metrics = (await world.client.get("/metrics")).text
    pattern = rf'^ecard_partner_calls_total{{issuer="{issuer}",outcome="([^"]+)"}} (\S+)$'
    return {outcome: float(value) for outcome, value in re.findall(pattern, metrics, re.MULTILINE)}


def calls_since(before: dict[str, float], after: dict[str, float]) -> dict[str, int]:
    return {k: int(v - before.get(k, 0)) for k, v in after.items() if v != before.get(k, 0)}


async def test_a_sichuan_code_is_accepted_at_a_chongqing_terminal_and_refused_on_replay_in_either_province(
    cq: LiveWorld, sc: LiveWorld
) -> None:
    library = await cq.merchant([JOINT], name="武隆区图书馆")
    terminal = await cq.terminal(library, "gate-1")
    citizen = await sc.device(name="李小明", region="sc")
    code = await sc.code(citizen)

    answer = await cq.verify(terminal, code, JOINT)

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["result"] == "accepted"
    # the item discloses a pseudonym and the masked name; the card says where it was issued; nothing else crosses
    assert set(body["card"]) == {"region", "pseudonym", "name_masked"}
    assert body["card"]["region"] == "sc"
    assert body["card"]["name_masked"] == "李*明"
    assert problem(await cq.verify(terminal, code, JOINT)) == (409, "code_already_used")
    sc_library = await sc.merchant([JOINT], name="成都图书馆", region="sc")
    assert problem(await sc.verify(sc_library, code, JOINT)) == (409, "code_already_used")

    # the holder sees, at home, that a Chongqing venue checked the card, and where
    history = await sc.signed(citizen, "GET", f"/v1/cards/{citizen.ids['card_id']}/verifications")
    assert history.status_code == 200, history.text
    (entry,) = history.json()["items"]
    assert entry["merchant_name"] == "武隆区图书馆"
    assert entry["via_issuer"] == "cq"
    assert entry["terminal_id"] == "gate-1"
    assert entry["disclosed"] == ["pseudonym", "name_masked"]


async def test_a_chongqing_code_is_accepted_in_sichuan_and_then_refused_at_home(cq: LiveWorld, sc: LiveWorld) -> None:
    chengdu = await sc.merchant([JOINT], name="成都图书馆", region="sc")
    citizen = await cq.device(name="王小红")
    code = await cq.code(citizen)

    answer = await sc.verify(chengdu, code, JOINT)

    assert answer.status_code == 200, answer.text
    assert answer.json()["card"]["region"] == "cq"
    wulong = await cq.merchant([JOINT])
    assert problem(await cq.verify(wulong, code, JOINT)) == (409, "code_already_used")


async def test_the_pseudonym_is_stable_per_merchant_across_provinces_and_differs_between_merchants(
    cq: LiveWorld, sc: LiveWorld
) -> None:
    one, other = await cq.merchant([JOINT], name="图书馆甲"), await cq.merchant([JOINT], name="图书馆乙")
    citizen = await sc.device(region="sc")
    seen = []
    for merchant in (one, one, other):
        answer = await cq.verify(merchant, await sc.code(citizen), JOINT)
        assert answer.status_code == 200, answer.text
        seen.append(answer.json()["card"]["pseudonym"])
    assert seen[0] == seen[1] != seen[2]


async def test_an_item_off_the_joint_list_is_refused_without_using_the_code_up(cq: LiveWorld, sc: LiveWorld) -> None:
    hotel = await cq.merchant([CHONGQING_ONLY, JOINT], name="武隆宾馆")
    citizen = await sc.device(region="sc")
    code = await sc.code(citizen)

    assert problem(await cq.verify(hotel, code, CHONGQING_ONLY)) == (403, "item_not_in_joint_list")
    assert (await cq.verify(hotel, code, JOINT)).status_code == 200


async def test_refusals_of_the_home_issuer_reach_the_terminal_unchanged(cq: LiveWorld, sc: LiveWorld) -> None:
    library = await cq.merchant([JOINT])
    citizen = await sc.device(region="sc")
    code = await sc.code(citizen)
    assert (await sc.set_status(citizen.ids["card_id"], "suspended")).status_code == 200

    assert problem(await cq.verify(library, code, JOINT)) == (403, "card_suspended")

    # a merchant not entitled to the item is refused here, before the partner is asked (the code stays usable)
    museum = await cq.merchant(["wl-031"])
    assert (await sc.set_status(citizen.ids["card_id"], "active")).status_code == 200
    fresh = await sc.code(citizen)
    assert problem(await cq.verify(museum, fresh, JOINT)) == (403, "merchant_not_entitled")
    assert (await cq.verify(library, fresh, JOINT)).status_code == 200


async def test_a_forged_code_in_a_partners_name_is_refused_here_by_the_partners_published_keys(
    cq: LiveWorld, sc: LiveWorld
) -> None:
    library = await cq.merchant([JOINT])
    citizen = await sc.device(region="sc")
    code = await sc.code(citizen)
    # one character of the signature changed: base45 keeps it a well-formed code with a bad signature
    forged = code[:-3] + ("0" if code[-3] != "0" else "1") + code[-2:]
    assert problem(await cq.verify(library, forged, JOINT))[1] in {"bad_signature", "malformed_code"}
    assert (await cq.verify(library, code, JOINT)).status_code == 200


async def test_only_a_registered_partner_may_ask_for_a_federated_verification(cq: LiveWorld) -> None:
    citizen = await cq.device()
    code = await cq.code(citizen)
    body = {"code": code, "item_code": JOINT, "merchant": {"id": "m1", "name": "某馆", "region": "sc"}}
    stranger = ed25519_actor()
    stranger.key_id = "sc:not-the-registered-key"
    assert problem(await cq.signed(stranger, "POST", "/v1/federation/verifications", body)) == (
        401,
        "unknown_client",
    )
    merchant = await cq.merchant([JOINT])
    assert problem(await cq.signed(merchant, "POST", "/v1/federation/verifications", body)) == (403, "forbidden")
    # and the code was not used up by either attempt
    assert (await cq.verify(merchant, code, JOINT)).status_code == 200


async def test_an_unreachable_partner_is_issuer_unavailable_never_an_accept_and_it_heals(
    provinces: Provinces, cq: LiveWorld, sc: LiveWorld
) -> None:
    library = await cq.merchant([JOINT])
    citizen = await sc.device(region="sc")
    code = await sc.code(citizen)
    provinces.sc.stop()
    before = await partner_calls(cq)
    try:
        for _ in range(4):  # enough failures to open the circuit: later ones are refused at once
            status, reason = problem(await cq.verify(library, code, JOINT))
            assert (status, reason) == (503, "issuer_unavailable")
    finally:
        provinces.sc.start()
    # three calls failed; the fourth was not even tried
    assert calls_since(before, await partner_calls(cq)) == {"unavailable": 3, "circuit_open": 1}
    deadline = time.monotonic() + 10
    while True:
        answer = await cq.verify(library, code, JOINT)
        if answer.status_code == 200 or time.monotonic() > deadline:
            break
        assert problem(answer) == (503, "issuer_unavailable")
        await asyncio.sleep(0.5)
    assert answer.status_code == 200, answer.text
    assert answer.json()["card"]["region"] == "sc"


async def test_the_trust_list_shows_each_partner_with_its_fetched_keys(cq: LiveWorld, sc: LiveWorld) -> None:
    listed = await cq.admin("GET", "/v1/admin/partners")
    assert listed.status_code == 200, listed.text
    by_issuer = {p["issuer"]: p for p in listed.json()["items"]}
    assert set(by_issuer) == {"sc", "ykb"}
    published = (await sc.client.get("/v1/issuer/keys")).json()["keys"]
    assert {k["kid"] for k in by_issuer["sc"]["code_keys"]} == {k["kid"] for k in published}
    assert by_issuer["sc"]["keys_fetched_at"] is not None
    request_keys = (await sc.client.get("/v1/issuer/request-keys")).json()
    assert request_keys["issuer"] == "sc"
    assert by_issuer["sc"]["key_id"] == f"sc:{request_keys['keys'][0]['kid']}"
    assert "d" not in request_keys["keys"][0]


async def test_a_partner_key_revoked_is_refused_once_the_trust_list_is_refreshed_even_with_the_partner_down(
    provinces: Provinces, cq: LiveWorld, sc: LiveWorld
) -> None:
    library = await cq.merchant([JOINT])
    citizen = await sc.device(region="sc")
    code = await sc.code(citizen)
    old_kid = next(k["kid"] for k in (await sc.client.get("/v1/issuer/keys")).json()["keys"] if k["status"] == "active")
    assert provinces.sc.cli("keys", "rotate").returncode == 0
    revoked = provinces.sc.cli("keys", "revoke", "--", old_kid)
    assert revoked.returncode == 0, revoked.stderr
    refreshed = provinces.cq.cli("partners", "refresh", "sc")
    assert refreshed.returncode == 0, refreshed.stderr
    provinces.sc.stop()
    try:
        # decided from the trust list alone: the partner need not (and cannot) be asked
        assert problem(await cq.verify(library, code, JOINT)) == (400, "key_revoked")
    finally:
        provinces.sc.start()
    assert (await cq.verify(library, await sc.code(citizen), JOINT)).status_code == 200


async def test_requests_between_issuers_are_signed_with_the_published_request_key(cq: LiveWorld) -> None:
    keys = (await cq.client.get("/v1/issuer/request-keys")).json()
    assert keys["issuer"] == "cq"
    # one key for each audience, the partners' first (where partners have always looked)
    assert [(k["audience"], k["status"]) for k in keys["keys"]] == [
        ("federation", "active"),
        ("yukuai", "active"),
        ("bank", "active"),
        ("callback", "active"),
    ]
    assert len({k["kid"] for k in keys["keys"]}) == 4
    assert {"kty", "crv", "x", "kid"} <= keys["keys"][0].keys()
    async with httpx.AsyncClient() as plain:
        unsigned = await plain.post(
            f"{cq.live.base}/v1/federation/verifications", json={"code": "EC1:x", "item_code": JOINT}
        )
    assert problem(unsigned) == (401, "signature_missing")


async def test_a_hung_partner_costs_the_terminal_the_partner_timeout_and_then_nothing_until_it_recovers(
    provinces: Provinces, cq: LiveWorld, sc: LiveWorld
) -> None:
    library = await cq.merchant([JOINT])
    citizen = await sc.device(region="sc")
    code = await sc.code(citizen)
    assert provinces.sc.process is not None
    before = await partner_calls(cq)
    os.kill(provinces.sc.process.pid, signal.SIGSTOP)  # accepts connections (the kernel does), answers nothing
    try:
        for _ in range(5):
            assert problem(await cq.verify(library, code, JOINT)) == (503, "issuer_unavailable")
    finally:
        os.kill(provinces.sc.process.pid, signal.SIGCONT)
    # the first tries waited out the partner timeout; once the circuit was open the partner was not called
    assert calls_since(before, await partner_calls(cq)) == {"unavailable": 3, "circuit_open": 2}
    await asyncio.sleep(1.2)  # the breaker's cool-down in these tests
    answer = await cq.verify(library, code, JOINT)
    assert answer.status_code == 200, answer.text
    # what the operator on call sees: the partner's calls by outcome, the open circuit among them
    metrics = (await cq.client.get("/metrics")).text
    for outcome in ("unavailable", "circuit_open", "accepted"):
        assert f'ecard_partner_calls_total{{issuer="sc",outcome="{outcome}"}}' in metrics, outcome
