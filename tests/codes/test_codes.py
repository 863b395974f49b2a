"""Minting dynamic codes: the JSON and QR forms, who gets none, and what a code does not reveal."""

from __future__ import annotations

import io
import os
import re
import xml.etree.ElementTree as ET
from datetime import datetime
from typing import Any

import base45
import cbor2
import pytest
import zxingcpp
from cryptography.hazmat.primitives.asymmetric import ed25519
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw

from ecard.codes import token
from ecard.kit.ids import id_to_bytes
from ecard.kit.refusal import Refusal
from ecard.kit.signing import sign_request
from tests.support import World, p256_actor, problem

TTL_S = 60
CLAIM_ISS, CLAIM_EXP, CLAIM_IAT, CLAIM_CTI, CLAIM_CARD_REF = 1, 4, 6, 7, -70001


def _message(code: str) -> list[Any]:
    assert code.startswith("EC1:")
    outer = cbor2.loads(base45.b45decode(code.removeprefix("EC1:")))
    assert isinstance(outer, cbor2.CBORTag)
    assert outer.tag == 18
    parts: list[Any] = outer.value
    return parts


def _claims(code: str) -> dict[int, Any]:
    claims: dict[int, Any] = cbor2.loads(_message(code)[2])
    return claims


def _timestamp(text: str) -> float:
    assert text.endswith("Z"), text
    return datetime.fromisoformat(text).timestamp()


def _longest_common_run(a: bytes, b: bytes) -> int:
    """Length of the longest byte string that occurs in both."""
    best = 0
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0] * (len(b) + 1)
        for j, y in enumerate(b, start=1):
            if x == y:
                current[j] = previous[j - 1] + 1
                best = max(best, current[j])
        previous = current
    return best


def _raster_of_svg(svg: str, scale: int = 4) -> Image.Image:
    """Draw the SVG's modules (rectangles in one path) the way a browser would, for a scanner to read."""
    root = ET.fromstring(svg)
    width, height = int(root.attrib["width"]), int(root.attrib["height"])
    picture = Image.new("L", (width * scale, height * scale), 255)
    draw = ImageDraw.Draw(picture)
    paths = [element.attrib["d"] for element in root.iter() if element.tag.endswith("path")]
    assert paths, svg[:300]
    modules = 0
    for d in paths:
        for x, y, w, h in re.findall(r"M(\d+) (\d+)h(\d+)v(\d+)h-\d+Z", d):
            left, top = int(x) * scale, int(y) * scale
            draw.rectangle((left, top, left + int(w) * scale - 1, top + int(h) * scale - 1), fill=0)
            modules += 1
    assert modules > 50, "the SVG path is not made of the module rectangles this reader expects"
    return picture


async def test_a_device_gets_a_code_that_lives_for_the_configured_lifetime(world: World) -> None:
    device = await world.device()
    # a moved service clock shows the lifetime is counted on the service's time, not the wall's
    world.clock.advance(1800)
    before = int(world.clock.now())
    answer = await world.signed(device, "POST", "/v1/codes", {})
    after = int(world.clock.now())

    assert answer.status_code == 201, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    assert answer.headers["cache-control"] == "no-store"
    body = answer.json()
    assert set(body) == {"code", "expires_at", "refresh_after"}
    assert body["code"].startswith("EC1:")
    expires_at = _timestamp(body["expires_at"])
    assert before + TTL_S <= expires_at <= after + TTL_S
    refresh_after = _timestamp(body["refresh_after"])
    assert before < refresh_after < expires_at
    claims = _claims(body["code"])
    assert claims[CLAIM_EXP] == expires_at
    assert claims[CLAIM_EXP] - claims[CLAIM_IAT] == TTL_S


async def test_a_fresh_code_is_accepted_and_an_expired_one_is_not(world: World) -> None:
    merchant = await world.merchant(["wl-030"])
    device = await world.device()
    fresh, stale = await world.code(device), await world.code(device)

    accepted = await world.verify(merchant, fresh)
    assert accepted.status_code == 200, accepted.text

    world.clock.advance(TTL_S + world.app.state.settings.clock_skew_s + 2)
    assert problem(await world.verify(merchant, stale)) == (400, "code_expired")


async def test_a_device_can_ask_for_the_code_as_a_png_qr_with_error_correction_m(world: World) -> None:
    merchant = await world.merchant(["wl-030"])
    device = await world.device()
    answer = await world.signed(device, "POST", "/v1/codes", {}, headers={"Accept": "image/png"})

    assert answer.status_code == 201, answer.text
    assert answer.headers["content-type"] == "image/png"
    assert answer.headers["cache-control"] == "no-store"
    scanned = zxingcpp.read_barcode(Image.open(io.BytesIO(answer.content)))
    assert scanned is not None
    assert scanned.valid
    assert scanned.format == zxingcpp.BarcodeFormat.QRCode
    assert scanned.ec_level == "M"
    code = scanned.text
    # alphanumeric mode can hold the code only because base45 stays inside its 45 characters
    assert re.fullmatch(r"EC1:[0-9A-Z $%*+\-./:]+", code)
    expires_at = _timestamp(answer.headers["ecard-code-expires"])
    assert _claims(code)[CLAIM_EXP] == expires_at

    accepted = await world.verify(merchant, code)
    assert accepted.status_code == 200, accepted.text


async def test_a_device_can_ask_for_the_code_as_an_svg_qr(world: World) -> None:
    merchant = await world.merchant(["wl-030"])
    device = await world.device()
    answer = await world.signed(device, "POST", "/v1/codes", {}, headers={"Accept": "image/svg+xml"})

    assert answer.status_code == 201, answer.text
    assert answer.headers["content-type"].startswith("image/svg+xml")
    scanned = zxingcpp.read_barcode(_raster_of_svg(answer.text))
    assert scanned is not None
    assert scanned.format == zxingcpp.BarcodeFormat.QRCode
    assert scanned.ec_level == "M"
    assert scanned.text.startswith("EC1:")
    assert _claims(scanned.text)[CLAIM_EXP] == _timestamp(answer.headers["ecard-code-expires"])

    accepted = await world.verify(merchant, scanned.text)
    assert accepted.status_code == 200, accepted.text


async def test_a_suspended_card_gets_no_code_until_it_is_reactivated(world: World) -> None:
    device = await world.device()
    assert (await world.set_status(device.ids["card_id"], "suspended")).status_code == 200

    refused = await world.signed(device, "POST", "/v1/codes", {})
    assert problem(refused) == (403, "card_suspended")
    refused_png = await world.signed(device, "POST", "/v1/codes", {}, headers={"Accept": "image/png"})
    assert problem(refused_png) == (403, "card_suspended")

    assert (await world.set_status(device.ids["card_id"], "active")).status_code == 200
    answer = await world.signed(device, "POST", "/v1/codes", {})
    assert answer.status_code == 201, answer.text


async def test_a_cancelled_card_gets_no_code(world: World) -> None:
    device = await world.device()
    assert (await world.set_status(device.ids["card_id"], "cancelled")).status_code == 200

    refused = await world.signed(device, "POST", "/v1/codes", {})
    assert problem(refused) == (403, "card_cancelled")


async def test_a_phone_replaced_by_a_newer_enrolment_gets_no_code(world: World) -> None:
    old_phone = await world.device("李四")
    assert (await world.signed(old_phone, "POST", "/v1/codes", {})).status_code == 201

    channel = await world.channel()
    new_phone = p256_actor()
    enrolled = await world.signed(
        channel,
        "POST",
        "/v1/enrolments",
        {
            "id_number": old_phone.ids["id_number"],
            "name": "李四",
            "device_public_key": new_phone.jwk,
            "device_name": "new phone",
        },
    )
    assert enrolled.status_code == 201, enrolled.text
    assert enrolled.json()["card_id"] == old_phone.ids["card_id"]
    new_phone.key_id = enrolled.json()["device_key_id"]

    refused = await world.signed(old_phone, "POST", "/v1/codes", {})
    assert problem(refused) == (403, "client_disabled")
    assert (await world.signed(new_phone, "POST", "/v1/codes", {})).status_code == 201


async def test_a_code_request_with_unknown_fields_is_refused(world: World) -> None:
    device = await world.device()
    refused = await world.signed(device, "POST", "/v1/codes", {"card": "crd_someone_else"})
    assert problem(refused) == (400, "invalid_request")
    assert "card" in refused.json()["detail"]
    # `card_id` is known (family accounts, tests/family): a card the device may not show is forbidden
    someone_else = await world.signed(device, "POST", "/v1/codes", {"card_id": "crd_someone_else"})
    assert problem(someone_else) == (403, "forbidden")


async def test_a_code_request_whose_body_is_not_a_json_object_is_refused(world: World) -> None:
    device = await world.device()
    refused = await world.signed(device, "POST", "/v1/codes", ["{}"])
    assert problem(refused) == (400, "invalid_request")

    raw = b"{not json"
    headers = sign_request(
        "POST",
        "http://testserver.local/v1/codes",
        raw,
        device.key,
        device.key_id,
        device.alg,
        created=world.clock.now(),
    )
    garbled = await world.client.post("/v1/codes", content=raw, headers={"Content-Type": "application/json", **headers})
    assert problem(garbled) == (400, "invalid_request")


async def test_a_code_request_without_a_device_signature_is_refused(world: World) -> None:
    answer = await world.client.post("/v1/codes", json={})
    assert problem(answer) == (401, "signature_missing")


async def test_a_merchant_key_cannot_mint_codes(world: World) -> None:
    merchant = await world.merchant(["wl-030"])
    answer = await world.signed(merchant, "POST", "/v1/codes", {})
    assert problem(answer) == (403, "forbidden")


async def test_two_codes_of_one_card_cannot_be_linked(world: World) -> None:
    device = await world.device()
    first, second = _claims(await world.code(device)), _claims(await world.code(device))

    # the fields every code of this issuer carries are all that the two have in common
    assert first[CLAIM_ISS] == second[CLAIM_ISS] == "cq"
    ref_a, ref_b = first[CLAIM_CARD_REF], second[CLAIM_CARD_REF]
    assert isinstance(ref_a, bytes)
    assert isinstance(ref_b, bytes)
    assert len(ref_a) == len(ref_b) >= 32
    # a sealed reference that repeated any run of its bytes would let an onlooker match the two
    assert _longest_common_run(ref_a, ref_b) < 6
    assert _longest_common_run(first[CLAIM_CTI], second[CLAIM_CTI]) < 6


async def test_codes_of_two_different_cards_look_alike(world: World) -> None:
    """An onlooker cannot tell from a reference's size or shape whose card it is."""
    one, other = await world.device("王五"), await world.device("欧阳小明")
    claims_one, claims_other = _claims(await world.code(one)), _claims(await world.code(other))
    assert set(claims_one) == set(claims_other)
    assert len(claims_one[CLAIM_CARD_REF]) == len(claims_other[CLAIM_CARD_REF])


async def test_a_code_carries_no_personal_data(world: World) -> None:
    device = await world.device("张小三")
    code = await world.code(device)
    raw = base45.b45decode(code.removeprefix("EC1:"))
    payload = _message(code)[2]

    assert set(cbor2.loads(payload)) == {CLAIM_ISS, CLAIM_IAT, CLAIM_EXP, CLAIM_CTI, CLAIM_CARD_REF}
    id_number = device.ids["id_number"]
    secrets = [
        "张小三".encode(),
        id_number.encode(),
        id_number[6:14].encode(),  # the birth date inside the ID number
        device.ids["card_id"].encode(),
        device.ids["device_id"].encode(),
        id_to_bytes(device.ids["card_id"]),
        id_to_bytes(device.ids["device_id"]),
    ]
    for secret in secrets:
        assert secret not in raw, secret
    assert id_number not in code


async def test_every_code_has_its_own_random_single_use_id(world: World) -> None:
    device = await world.device()
    ids = [_claims(await world.code(device))[CLAIM_CTI] for _ in range(5)]
    assert all(isinstance(cti, bytes) for cti in ids)
    assert all(len(cti) >= 12 for cti in ids)  # at least 96 bits
    assert len(set(ids)) == len(ids)
    # random, not a counter: no two share a long run of bytes
    assert max(_longest_common_run(a, b) for a in ids for b in ids if a is not b) < 6


# -- the parser: any input is a Token or malformed_code, never anything else --------------------------------------

_KEY = ed25519.Ed25519PrivateKey.generate()
_GENUINE = base45.b45decode(
    token.mint(_KEY, os.urandom(8), "cq", 1_700_000_000, 1_700_000_060, os.urandom(16), os.urandom(60))[4:]
)

_cbor_leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True)
    | st.binary(max_size=40)
    | st.text(max_size=20)
)
_cbor_values = st.recursive(
    _cbor_leaves,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.integers(-70002, 10) | st.text(max_size=4), children)
    ),
    max_leaves=12,
)


def _decodes_or_is_malformed(code: str) -> None:
    refusal: Refusal | None = None
    try:
        parsed = token.decode(code)
    except Refusal as refused:
        refusal = refused
    if refusal is not None:
        assert (refusal.code, refusal.status) == ("malformed_code", 400)
        return
    assert isinstance(parsed, token.Token)
    assert len(parsed.kid) == 8
    assert 12 <= len(parsed.cti) <= 32


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=1200))
def test_any_text_is_a_code_or_malformed(text: str) -> None:
    _decodes_or_is_malformed(text)
    _decodes_or_is_malformed("EC1:" + text)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=700))
def test_any_bytes_after_the_prefix_are_a_code_or_malformed(raw: bytes) -> None:
    _decodes_or_is_malformed("EC1:" + base45.b45encode(raw).decode())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(st.just(18), st.integers(0, 300)),
    _cbor_values,
    _cbor_values,
    st.dictionaries(st.integers(-70002, 10), _cbor_values, max_size=7),
    _cbor_values,
)
def test_any_cbor_in_the_shape_of_a_cose_sign1_is_a_code_or_malformed(
    tag: int, header: object, unprotected: object, claims: dict[int, object], signature: object
) -> None:
    protected = cbor2.dumps(header)
    message = cbor2.dumps(cbor2.CBORTag(tag, [protected, unprotected, cbor2.dumps(claims), signature]))
    _decodes_or_is_malformed("EC1:" + base45.b45encode(message).decode())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(_GENUINE) - 1), st.integers(0, 255)), min_size=1, max_size=4))
def test_a_genuine_code_with_bytes_changed_is_a_code_or_malformed(changes: list[tuple[int, int]]) -> None:
    raw = bytearray(_GENUINE)
    for at, value in changes:
        raw[at] = value
    _decodes_or_is_malformed("EC1:" + base45.b45encode(bytes(raw)).decode())


def test_an_overlong_code_is_malformed() -> None:
    with pytest.raises(Refusal) as refused:
        token.decode("EC1:" + "0" * 5000)
    assert refused.value.code == "malformed_code"
