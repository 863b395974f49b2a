"""A terminal vendor checks a code offline with stock libraries and the published keys; forgeries fail both ways."""

from __future__ import annotations

import base64
import hashlib
import io
import os
from typing import Any

import base45
import cbor2
import zxingcpp
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from PIL import Image
from pycose.algorithms import EdDSA
from pycose.headers import KID, Algorithm
from pycose.keys.okp import OKPKey
from pycose.messages.sign1message import Sign1Message

from ecard.codes import token
from tests.support import Actor, World, problem

CLAIM_ISS, CLAIM_EXP, CLAIM_IAT, CLAIM_CTI, CLAIM_CARD_REF = 1, 4, 6, 7, -70001


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _cose(code: str) -> bytes:
    assert code.startswith("EC1:")
    raw: bytes = base45.b45decode(code.removeprefix("EC1:"))
    return raw


def _with_parts(code: str, **changes: Any) -> str:
    """The same code re-encoded with some of its COSE_Sign1 parts replaced."""
    outer = cbor2.loads(_cose(code))
    protected, unprotected, payload, signature = outer.value
    parts = {"protected": protected, "payload": payload, "signature": signature, **changes}
    message = cbor2.dumps(cbor2.CBORTag(18, [parts["protected"], unprotected, parts["payload"], parts["signature"]]))
    return "EC1:" + str(base45.b45encode(message).decode())


def _offline_verifies(code: str, jwk: dict[str, Any]) -> bool:
    message = Sign1Message.decode(_cose(code))
    message.key = OKPKey(crv="Ed25519", x=_unb64url(jwk["x"]))
    return bool(message.verify_signature())


async def _scanned_code(world: World, device: Actor) -> str:
    answer = await world.signed(device, "POST", "/v1/codes", {}, headers={"Accept": "image/png"})
    assert answer.status_code == 201, answer.text
    scanned = zxingcpp.read_barcode(Image.open(io.BytesIO(answer.content)))
    assert scanned is not None
    text: str = scanned.text
    return text


async def _published_key(world: World) -> dict[str, Any]:
    answer = await world.client.get("/v1/issuer/keys")
    assert answer.status_code == 200, answer.text
    [active] = [key for key in answer.json()["keys"] if key["status"] == "active"]
    return dict(active)


async def test_a_terminal_checks_a_scanned_code_offline_with_stock_libraries(world: World) -> None:
    device = await world.device()
    before = int(world.clock.now())
    code = await _scanned_code(world, device)

    message = Sign1Message.decode(_cose(code))
    kid = message.phdr[KID]
    assert message.phdr[Algorithm] == EdDSA
    assert isinstance(kid, bytes)
    assert len(kid) == 8

    published = (await world.client.get("/v1/issuer/keys")).json()
    assert published["issuer"] == "cq"
    [jwk] = [key for key in published["keys"] if key["kid"] == _b64url(kid)]
    assert (jwk["kty"], jwk["crv"], jwk["alg"]) == ("OKP", "Ed25519", "EdDSA")
    public_raw = _unb64url(jwk["x"])
    assert hashlib.sha256(public_raw).digest()[:8] == kid

    message.key = OKPKey(crv="Ed25519", x=public_raw)
    assert message.verify_signature() is True

    assert isinstance(message.payload, bytes)
    claims = cbor2.loads(message.payload)
    assert claims[CLAIM_ISS] == "cq"
    assert before <= claims[CLAIM_IAT] <= world.clock.now()
    assert claims[CLAIM_EXP] - claims[CLAIM_IAT] == 60
    assert isinstance(claims[CLAIM_CTI], bytes)
    assert len(claims[CLAIM_CTI]) >= 12


async def test_the_published_key_does_not_verify_another_issuers_signature(world: World) -> None:
    """The offline check is not vacuous: a stranger's key does not verify a genuine code."""
    device = await world.device()
    code = await world.code(device)
    stranger = ed25519.Ed25519PrivateKey.generate().public_key()
    jwk = {"x": _b64url(stranger.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))}
    assert _offline_verifies(code, jwk) is False
    assert _offline_verifies(code, await _published_key(world)) is True


async def test_a_code_with_one_signature_byte_flipped_fails_offline_and_online(world: World) -> None:
    merchant = await world.merchant(["wl-030"])
    device = await world.device()
    code = await world.code(device)
    signature = bytearray(cbor2.loads(_cose(code)).value[3])
    signature[17] ^= 0x01
    forged = _with_parts(code, signature=bytes(signature))
    jwk = await _published_key(world)

    assert _offline_verifies(forged, jwk) is False
    assert problem(await world.verify(merchant, forged)) == (400, "bad_signature")
    # the forgery did not use up the genuine code
    accepted = await world.verify(merchant, code)
    assert accepted.status_code == 200, accepted.text


async def test_a_code_whose_expiry_was_pushed_back_fails_offline_and_online(world: World) -> None:
    merchant = await world.merchant(["wl-030"])
    device = await world.device()
    code = await world.code(device)
    claims = cbor2.loads(cbor2.loads(_cose(code)).value[2])
    claims[CLAIM_EXP] += 3600
    stretched = _with_parts(code, payload=cbor2.dumps(claims))

    assert _offline_verifies(stretched, await _published_key(world)) is False
    assert problem(await world.verify(merchant, stretched)) == (400, "bad_signature")


async def test_a_code_signed_by_a_key_nobody_published_is_refused_as_unknown_key(world: World) -> None:
    merchant = await world.merchant(["wl-030"])
    device = await world.device()
    genuine = cbor2.loads(cbor2.loads(_cose(await world.code(device))).value[2])
    rogue = ed25519.Ed25519PrivateKey.generate()
    rogue_raw = rogue.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    now = int(world.clock.now())
    # everything else is as the issuer would make it, down to a genuine sealed card reference
    forged = token.mint(
        rogue, hashlib.sha256(rogue_raw).digest()[:8], "cq", now, now + 60, os.urandom(16), genuine[CLAIM_CARD_REF]
    )

    assert problem(await world.verify(merchant, forged)) == (400, "unknown_key")
    published = (await world.client.get("/v1/issuer/keys")).json()["keys"]
    assert _b64url(hashlib.sha256(rogue_raw).digest()[:8]) not in {key["kid"] for key in published}


async def test_a_code_signed_by_a_stranger_under_the_issuers_kid_is_refused_as_bad_signature(world: World) -> None:
    merchant = await world.merchant(["wl-030"])
    device = await world.device()
    genuine = cbor2.loads(cbor2.loads(_cose(await world.code(device))).value[2])
    jwk = await _published_key(world)
    now = int(world.clock.now())
    forged = token.mint(
        ed25519.Ed25519PrivateKey.generate(),
        _unb64url(jwk["kid"]),
        "cq",
        now,
        now + 60,
        os.urandom(16),
        genuine[CLAIM_CARD_REF],
    )

    assert _offline_verifies(forged, jwk) is False
    assert problem(await world.verify(merchant, forged)) == (400, "bad_signature")
