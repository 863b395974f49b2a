"""A guardian shows a member's card: the code, what a merchant learns, the member's history, unlinkability."""

from __future__ import annotations

import io
from typing import Any

import base45
import cbor2
import zxingcpp
from PIL import Image

from ecard.kit.ids import id_to_bytes
from tests.family.support import added, code_for, consent, enrol, member, years_ago
from tests.support import Actor, World, problem

CLAIM_CARD_REF = -70001


def _claims(code: str) -> dict[int, Any]:
    outer = cbor2.loads(base45.b45decode(code.removeprefix("EC1:")))
    claims: dict[int, Any] = cbor2.loads(outer.value[2])
    return claims


async def _linked_father(world: World, daughter: Actor) -> tuple[dict[str, str], dict[str, str]]:
    father = await member(world, "王大山", years_ago(world, 80))
    link = await added(world, daughter, father, "parent")
    assert (await consent(world, await world.channel(), link["link_id"], father)).status_code == 200
    return father, link


async def test_the_clinic_learns_the_fathers_name_not_the_daughters_and_his_history_says_family(
    world: World,
) -> None:
    clinic = await world.merchant(["wl-040"], name="武隆区人民医院")
    daughter = await world.device("王小红")
    father, _link = await _linked_father(world, daughter)

    minted = await code_for(world, daughter, father["card_id"])
    assert minted.status_code == 201, minted.text
    assert set(minted.json()) == {"code", "expires_at", "refresh_after"}
    checked = await world.verify(clinic, minted.json()["code"], "wl-040")

    assert checked.status_code == 200, checked.text
    card = checked.json()["card"]
    assert card["name"] == "王大山"
    assert card["id_number"] == father["id_number"]
    assert "王小红" not in checked.text
    assert daughter.ids["id_number"] not in checked.text
    assert daughter.ids["card_id"] not in checked.text
    # single use, as any code
    assert problem(await world.verify(clinic, minted.json()["code"], "wl-040")) == (409, "code_already_used")

    # the father enrols a phone later and reads who checked his card
    phone = await enrol(world, father)
    history = await world.signed(phone, "GET", f"/v1/cards/{father['card_id']}/verifications")
    assert history.status_code == 200, history.text
    [entry] = history.json()["items"]
    assert entry["verification_id"] == checked.json()["verification_id"]
    assert entry["via"] == "family"
    assert entry["relation"] == "parent"
    assert entry["merchant_name"] == "武隆区人民医院"
    # his own code shows without `via`; the daughter's own history holds nothing of his
    own = await world.verify(clinic, await world.code(phone), "wl-040")
    assert own.status_code == 200, own.text
    entries = (await world.signed(phone, "GET", f"/v1/cards/{father['card_id']}/verifications")).json()["items"]
    mine = next(e for e in entries if e["verification_id"] == own.json()["verification_id"])
    assert mine.get("via") is None
    assert mine.get("relation") is None
    hers = await world.signed(daughter, "GET", f"/v1/cards/{daughter.ids['card_id']}/verifications")
    assert hers.json()["items"] == []


async def test_the_guardian_can_show_the_members_code_as_a_png_or_svg_qr(world: World) -> None:
    clinic = await world.merchant(["wl-040"])
    daughter = await world.device("王小红")
    father, _link = await _linked_father(world, daughter)

    png = await code_for(world, daughter, father["card_id"], accept="image/png")
    assert png.status_code == 201, png.text
    assert png.headers["content-type"] == "image/png"
    scanned = zxingcpp.read_barcode(Image.open(io.BytesIO(png.content)))
    assert scanned is not None
    checked = await world.verify(clinic, scanned.text, "wl-040")
    assert checked.status_code == 200, checked.text
    assert checked.json()["card"]["name"] == "王大山"

    svg = await code_for(world, daughter, father["card_id"], accept="image/svg+xml")
    assert svg.status_code == 201, svg.text
    assert svg.headers["content-type"].startswith("image/svg+xml")


async def test_a_members_code_cannot_be_told_from_anyone_elses(world: World) -> None:
    daughter = await world.device("王小红")
    father, _link = await _linked_father(world, daughter)
    phone = await enrol(world, father)

    shown_by_daughter = [(await code_for(world, daughter, father["card_id"])).json()["code"] for _ in range(3)]
    his_own = [await world.code(phone) for _ in range(3)]
    hers = [await world.code(daughter) for _ in range(3)]

    # the same claims, the same lengths: nothing says who minted a code or for whom
    shapes = {(tuple(sorted(_claims(c))), len(_claims(c)[CLAIM_CARD_REF]), len(c)) for c in shown_by_daughter}
    assert shapes == {(tuple(sorted(_claims(c))), len(_claims(c)[CLAIM_CARD_REF]), len(c)) for c in his_own + hers}
    refs = [_claims(c)[CLAIM_CARD_REF] for c in shown_by_daughter + his_own]
    assert len(set(refs)) == len(refs)
    raw = b"".join(base45.b45decode(c.removeprefix("EC1:")) for c in shown_by_daughter)
    for card_or_device in (daughter.ids["card_id"], daughter.ids["device_id"], father["card_id"]):
        assert id_to_bytes(card_or_device) not in raw
        assert card_or_device.encode() not in raw


async def test_a_device_shows_only_its_own_card_and_its_linked_members(world: World) -> None:
    daughter = await world.device("王小红")
    stranger = await world.device("路人甲")
    father, _link = await _linked_father(world, daughter)
    unlinked = await member(world, "王二叔")

    assert problem(await code_for(world, stranger, father["card_id"])) == (403, "forbidden")
    assert problem(await code_for(world, daughter, unlinked["card_id"])) == (403, "forbidden")
    assert problem(await code_for(world, daughter, "crd_nonesuch")) == (403, "forbidden")
    assert problem(await code_for(world, daughter, 5)) == (400, "invalid_request")  # type: ignore[arg-type]
    # naming one's own card is one's own code
    own = await code_for(world, daughter, daughter.ids["card_id"])
    assert own.status_code == 201, own.text


async def test_a_suspended_member_card_gets_no_code_and_a_suspended_guardian_shows_none(world: World) -> None:
    clinic = await world.merchant(["wl-040"])
    daughter = await world.device("王小红")
    father, _link = await _linked_father(world, daughter)
    early = (await code_for(world, daughter, father["card_id"])).json()["code"]

    assert (await world.set_status(father["card_id"], "suspended")).status_code == 200
    assert problem(await code_for(world, daughter, father["card_id"])) == (403, "card_suspended")
    assert problem(await world.verify(clinic, early, "wl-040")) == (403, "card_suspended")

    assert (await world.set_status(father["card_id"], "active")).status_code == 200
    assert (await world.set_status(daughter.ids["card_id"], "suspended")).status_code == 200
    assert problem(await code_for(world, daughter, father["card_id"])) == (403, "card_suspended")
