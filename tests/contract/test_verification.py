"""API.md, "Verification": `POST /v1/verifications`, its answer, what a card discloses, and every refusal it names."""

from __future__ import annotations

import csv
import os
from datetime import datetime
from typing import Any

import base45
import cbor2
import pytest

from ecard.catalog.seed import CATALOG_CSV
from tests.contract.support import Integrator, problem_of
from tests.support import World, ecard_cli

PLACE = {"name": "武隆区图书馆总馆", "address": "武隆区芙蓉中路1号", "region": "wulong", "lat": 29.32, "lon": 107.76}


def recode(code: str, change: Any) -> str:
    """The code with its COSE_Sign1 parts changed by `change([protected, unprotected, payload, signature])`."""
    sign1 = cbor2.loads(base45.b45decode(code.removeprefix("EC1:")))
    parts = list(sign1.value)
    change(parts)
    encoded: bytes = base45.b45encode(cbor2.dumps(cbor2.CBORTag(sign1.tag, parts)))
    return "EC1:" + encoded.decode()


def with_claim(code: str, claim: int, value: Any) -> str:
    def change(parts: list[Any]) -> None:
        claims = cbor2.loads(parts[2])
        claims[claim] = value
        parts[2] = cbor2.dumps(claims)

    return recode(code, change)


async def test_post_verifications_answers_accepted_with_the_card(api: Integrator) -> None:
    """`POST /v1/verifications` `{"code","item_code"}` → 200 `{"result":"accepted","verification_id","item_code",
    "verified_at","card":{"pseudonym","name_masked","region", ...what the item discloses}}`."""
    phone = await api.phone("张小三")
    library = await api.merchant(["wl-030"])

    answer = await api.verify(library, await api.code(phone), "wl-030")

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["result"] == "accepted"
    assert body["item_code"] == "wl-030"
    assert body["verification_id"]
    datetime.fromisoformat(body["verified_at"])
    assert body["card"]["region"] == "cq"
    assert body["card"]["name_masked"] == "张*三"
    assert body["card"]["pseudonym"]


async def test_terminal_id_and_place_are_optional(api: Integrator) -> None:
    """`{"code","item_code","terminal_id":optional,"place":optional}`."""
    phone = await api.phone()
    library = await api.merchant(["wl-030"])

    answer = await api.verify(library, await api.code(phone), "wl-030", terminal_id="gate-1", place=PLACE)

    assert answer.status_code == 200, answer.text
    history = await api.signed(phone, "GET", f"/v1/cards/{phone.ids['card_id']}/verifications")
    assert history.json()["items"][0]["terminal_id"] == "gate-1"


async def test_the_pseudonym_is_stable_at_one_merchant_and_differs_across_merchants(api: Integrator) -> None:
    """`pseudonym`: stable for one holder at one merchant, different across merchants."""
    phone = await api.phone()
    library, museum = await api.merchant(["wl-030"]), await api.merchant(["wl-030"], name="武隆博物馆")

    first = await api.verify(library, await api.code(phone), "wl-030")
    again = await api.verify(library, await api.code(phone), "wl-030")
    elsewhere = await api.verify(museum, await api.code(phone), "wl-030")

    assert first.json()["card"]["pseudonym"] == again.json()["card"]["pseudonym"]
    assert first.json()["card"]["pseudonym"] != elsewhere.json()["card"]["pseudonym"]


def discloses_column() -> dict[str, list[str]]:
    with CATALOG_CSV.open(encoding="utf-8-sig") as file:
        return {
            row["item_code"]: [d.strip() for d in row["discloses"].split(",") if d.strip()]
            for row in csv.DictReader(file)
            if row["kind"] == "service"
        }


@pytest.mark.parametrize("item_code", ["wl-030", "wl-011", "wl-008", "wl-010"])
async def test_the_card_holds_exactly_what_the_item_discloses_plus_region(api: Integrator, item_code: str) -> None:
    """`card` holds exactly what the item's catalog entry lists in `discloses` (seeded from the `discloses` column
    of `catalog/wulong-2025.csv`), plus `region`; full `name` and `id_number` only where the item requires them."""
    phone = await api.phone("张小三")
    venue = await api.merchant([item_code])

    answer = await api.verify(venue, await api.code(phone), item_code)

    assert answer.status_code == 200, answer.text
    card = answer.json()["card"]
    assert set(card) == {*discloses_column()[item_code], "region"}
    if "name" in card:
        assert (card["name"], card["id_number"]) == ("张小三", phone.ids["id_number"])
    else:
        assert phone.ids["id_number"] not in answer.text
        assert "张小三" not in answer.text


async def test_a_code_that_is_not_one_is_malformed_code(api: Integrator) -> None:
    """Refusals: `malformed_code`."""
    library = await api.merchant(["wl-030"])

    for code in ("EC1:", "EC1:!!!", "HC1:6BFOXN%TS3DH", "EC1:" + base45.b45encode(b"\x00\x01").decode()):
        assert problem_of(await api.verify(library, code, "wl-030"))[1] == "malformed_code"


async def test_a_code_of_an_issuer_nobody_knows_is_unknown_issuer(api: Integrator) -> None:
    """Refusals: `unknown_issuer`."""
    phone = await api.phone()
    library = await api.merchant(["wl-030"])

    answer = await api.verify(library, with_claim(await api.code(phone), 1, "xz"), "wl-030")

    assert problem_of(answer)[1] == "unknown_issuer"


async def test_a_code_under_a_key_the_issuer_never_published_is_unknown_key(api: Integrator) -> None:
    """Refusals: `unknown_key`."""
    phone = await api.phone()
    library = await api.merchant(["wl-030"])

    def other_kid(parts: list[Any]) -> None:
        header = cbor2.loads(parts[0])
        header[4] = os.urandom(8)
        parts[0] = cbor2.dumps(header)

    answer = await api.verify(library, recode(await api.code(phone), other_kid), "wl-030")

    assert problem_of(answer)[1] == "unknown_key"


async def test_a_code_whose_signature_does_not_verify_is_bad_signature(api: Integrator) -> None:
    """Refusals: `bad_signature`."""
    phone = await api.phone()
    library = await api.merchant(["wl-030"])

    def flipped(parts: list[Any]) -> None:
        parts[3] = bytes([parts[3][0] ^ 1]) + parts[3][1:]

    answer = await api.verify(library, recode(await api.code(phone), flipped), "wl-030")

    assert problem_of(answer)[1] == "bad_signature"


async def test_a_code_of_a_revoked_key_is_key_revoked(world: World, api: Integrator) -> None:
    """Refusals: `key_revoked`."""
    phone = await api.phone()
    library = await api.merchant(["wl-030"])
    code = await api.code(phone)
    [kid] = [k["kid"] for k in (await api.client.get("/v1/issuer/keys")).json()["keys"] if k["status"] == "active"]

    revoked = await ecard_cli(world, "keys", "revoke", "--", kid)

    assert revoked.returncode == 0, revoked.stderr
    assert problem_of(await api.verify(library, code, "wl-030"))[1] == "key_revoked"


async def test_a_code_past_its_lifetime_is_code_expired(world: World, api: Integrator) -> None:
    """Refusals: `code_expired` (60 s by default, 30 s of clock skew tolerated)."""
    phone = await api.phone()
    library = await api.merchant(["wl-030"])
    code = await api.code(phone)

    world.clock.advance(60 + 30 + 1)

    assert problem_of(await api.verify(library, code, "wl-030"))[1] == "code_expired"


async def test_a_code_from_the_future_is_code_not_yet_valid(world: World, api: Integrator) -> None:
    """Refusals: `code_not_yet_valid`."""
    phone = await api.phone()
    library = await api.merchant(["wl-030"])
    code = await api.code(phone)

    world.clock.advance(-(30 + 5))

    assert problem_of(await api.verify(library, code, "wl-030"))[1] == "code_not_yet_valid"


async def test_a_code_used_once_is_code_already_used(api: Integrator) -> None:
    """Refusals: `code_already_used`."""
    phone = await api.phone()
    library = await api.merchant(["wl-030"])
    code = await api.code(phone)
    assert (await api.verify(library, code, "wl-030")).status_code == 200

    assert problem_of(await api.verify(library, code, "wl-030")) == (409, "code_already_used")


@pytest.mark.parametrize(("status", "refusal"), [("suspended", "card_suspended"), ("cancelled", "card_cancelled")])
async def test_a_code_of_a_card_no_longer_active_is_refused(api: Integrator, status: str, refusal: str) -> None:
    """Refusals: `card_suspended`, `card_cancelled`."""
    phone = await api.phone()
    library = await api.merchant(["wl-030"])
    code = await api.code(phone)
    assert (await api.card_status(phone.ids["card_id"], status)).status_code == 200

    assert problem_of(await api.verify(library, code, "wl-030")) == (403, refusal)


async def test_an_item_code_of_no_item_is_item_unknown(api: Integrator) -> None:
    """Refusals: `item_unknown`."""
    phone = await api.phone()
    library = await api.merchant(["wl-030"])

    assert problem_of(await api.verify(library, await api.code(phone), "wl-999")) == (404, "item_unknown")


async def test_an_item_for_physical_cards_only_is_card_mode_not_accepted(api: Integrator) -> None:
    """Refusals: `card_mode_not_accepted` (the item takes physical cards only)."""
    phone = await api.phone()
    office = await api.merchant(["wl-018"], name="武隆区民政局")

    assert problem_of(await api.verify(office, await api.code(phone), "wl-018"))[1] == "card_mode_not_accepted"


async def test_an_item_the_merchant_is_not_entitled_to_is_merchant_not_entitled(api: Integrator) -> None:
    """Refusals: `merchant_not_entitled`."""
    phone = await api.phone()
    library = await api.merchant(["wl-030"])

    assert problem_of(await api.verify(library, await api.code(phone), "wl-011")) == (403, "merchant_not_entitled")
