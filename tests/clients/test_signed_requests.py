"""Signed requests (RFC 9421 with RFC 9530 Content-Digest): every refusal of API.md, and what gets through."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from http_message_signatures import HTTPMessageSigner, HTTPMessageVerifier, algorithms
from http_message_signatures.resolvers import MappingKeyResolver
from http_message_signatures.structures import CaseInsensitiveDict

from ecard.kit.jwk import ALG_ED25519, ALG_P256, PrivateKey
from ecard.kit.refusal import Refusal
from ecard.kit.signing import parse_signature_params, sign_request, verify_signature
from tests.support import Actor, World, ed25519_actor, id_number, p256_actor, problem

BASE = ("@method", "@path", "@query")
WITH_BODY = (*BASE, "content-digest")
ORIGIN = "http://testserver.local"


# --- building requests by hand -------------------------------------------------------------------


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def sha256_digest(body: bytes) -> str:
    return f"sha-256=:{b64(hashlib.sha256(body).digest())}:"


def fresh_nonce() -> str:
    return base64.urlsafe_b64encode(os.urandom(12)).decode()


def raw_signature(key: PrivateKey, base: bytes) -> bytes:
    """What the algorithm of RFC 9421 section 3.3 puts in Signature: Ed25519 bytes, or ECDSA r || s."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        r, s = decode_dss_signature(key.sign(base, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return key.sign(base)


def _sf_param(name: str, value: str | int) -> str:
    return f";{name}={value}" if isinstance(value, int) else f';{name}="{value}"'


def hand_signed(
    world: World,
    actor: Actor,
    method: str,
    target: str,
    body: bytes,
    *,
    components: tuple[str, ...] | None = None,
    digest: str | None = None,
    sign_with: PrivateKey | None = None,
    params: Mapping[str, str | int | None] | None = None,
) -> dict[str, str]:
    """Signature headers made without any library: a correct signature over whatever components and
    parameters are asked for, so that only the service's rule about them can refuse the request.
    `params` replaces the usual parameters; a value of None leaves that parameter out."""
    path, _, query = target.partition("?")
    components = components if components is not None else (WITH_BODY if body else BASE)
    headers = {"Content-Type": "application/json"}
    values = {"@method": method.upper(), "@path": path, "@query": "?" + query}
    digest = digest if digest is not None else sha256_digest(body)
    if "content-digest" in components:
        headers["Content-Digest"] = digest
        values["content-digest"] = digest
    chosen: dict[str, str | int | None] = {
        "created": int(world.clock.now()),
        "keyid": actor.key_id,
        "alg": actor.alg,
        "nonce": fresh_nonce(),
        **(params or {}),
    }
    signature_params = "(" + " ".join(f'"{c}"' for c in components) + ")"
    signature_params += "".join(_sf_param(k, v) for k, v in chosen.items() if v is not None)
    lines = [f'"{c}": {values[c]}' for c in components]
    lines.append(f'"@signature-params": {signature_params}')
    signature = raw_signature(sign_with or actor.key, "\n".join(lines).encode())
    headers["Signature-Input"] = f"sig1={signature_params}"
    headers["Signature"] = f"sig1=:{b64(signature)}:"
    return headers


def as_json(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


async def send(world: World, method: str, target: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return await world.client.request(method, target, content=body, headers=headers)


def library_signed(
    actor: Actor, method: str, target: str, body: bytes, created: float, nonce: str, headers: dict[str, str]
) -> dict[str, str]:
    """sign_request's headers, but for a request whose wire form will differ from what was signed."""
    return {
        "Content-Type": "application/json",
        **sign_request(method, ORIGIN + target, body, actor.key, actor.key_id, actor.alg, created=created, nonce=nonce),
        **headers,
    }


async def ready_code(world: World) -> tuple[Actor, Actor, str]:
    """A library merchant entitled to wl-030, a citizen's device, and a fresh code from it."""
    merchant = await world.merchant(["wl-030", "wl-011"])
    device = await world.device("张小三")
    return merchant, device, await world.code(device)


async def accepted(answer: httpx.Response) -> dict[str, Any]:
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    assert body["result"] == "accepted"
    return body


# --- signature_missing ---------------------------------------------------------------------------


@pytest.mark.parametrize("keep", [(), ("Signature-Input",), ("Signature",)], ids=["neither", "input-only", "sig-only"])
async def test_a_verification_without_both_signature_headers_is_refused_as_signature_missing(
    world: World, keep: tuple[str, ...]
) -> None:
    merchant, _, code = await ready_code(world)
    body = as_json({"code": code, "item_code": "wl-030"})
    headers = hand_signed(world, merchant, "POST", "/v1/verifications", body)
    headers = {k: v for k, v in headers.items() if k not in {"Signature-Input", "Signature"} or k in keep}
    answer = await send(world, "POST", "/v1/verifications", body, headers)
    assert problem(answer) == (401, "signature_missing")
    await accepted(await world.verify(merchant, code))


async def test_an_unsigned_code_request_is_refused_as_signature_missing(world: World) -> None:
    answer = await world.client.post("/v1/codes", json={})
    assert problem(answer) == (401, "signature_missing")


# --- signature_invalid: the shape of Signature-Input and Signature --------------------------------


@pytest.mark.parametrize(
    "signature_input",
    [
        "garbage ( not a dictionary",
        "sig1=(((",
        'sig1="@method"',
        (
            'sig1=("@method" "@path" "@query" "content-digest");created=1;keyid="k";nonce="nonce-123", '
            'sig2=("@method" "@path" "@query" "content-digest");created=1;keyid="k";nonce="nonce-456"'
        ),
    ],
    ids=["not-sf", "unbalanced", "not-an-inner-list", "two-signatures"],
)
async def test_a_signature_input_in_another_shape_is_refused_as_signature_invalid(
    world: World, signature_input: str
) -> None:
    merchant, _, code = await ready_code(world)
    body = as_json({"code": code, "item_code": "wl-030"})
    headers = hand_signed(world, merchant, "POST", "/v1/verifications", body)
    headers["Signature-Input"] = signature_input
    answer = await send(world, "POST", "/v1/verifications", body, headers)
    assert problem(answer) == (401, "signature_invalid")


@pytest.mark.parametrize(
    "signature",
    ["sig1=not-a-byte-sequence", "sig2=:AAAA:", "sig1=:%%%:"],
    ids=["token-not-bytes", "other-label", "not-sf"],
)
async def test_a_signature_field_without_bytes_for_the_label_is_refused(world: World, signature: str) -> None:
    merchant, _, code = await ready_code(world)
    body = as_json({"code": code, "item_code": "wl-030"})
    headers = hand_signed(world, merchant, "POST", "/v1/verifications", body)
    headers["Signature"] = signature
    answer = await send(world, "POST", "/v1/verifications", body, headers)
    assert problem(answer) == (401, "signature_invalid")


async def test_the_hand_made_signature_of_these_tests_is_the_published_shape(world: World) -> None:
    """The control for the refusals below: hand_signed with nothing changed is accepted, for both key types."""
    for actor in (ed25519_actor(), p256_actor()):
        merchant = await world.merchant(["wl-030"], actor=actor)
        device = await world.device("张小三")
        body = as_json({"code": await world.code(device), "item_code": "wl-030"})
        headers = hand_signed(world, merchant, "POST", "/v1/verifications", body)
        await accepted(await send(world, "POST", "/v1/verifications", body, headers))


@pytest.mark.parametrize(
    "components",
    [
        ("@method", "@path", "content-digest"),
        ("@method", "@query", "content-digest"),
        ("@path", "@query", "content-digest"),
        ("@path", "@method", "@query", "content-digest"),
        ("content-digest", "@method", "@path", "@query"),
        ("@method", "@path", "@query", "content-digest", "content-type"),
        ("@method", "@path", "@query", "@authority", "content-digest"),
        (),
    ],
    ids=["no-query", "no-path", "no-method", "swapped", "digest-first", "extra-header", "extra-derived", "none"],
)
async def test_components_other_than_the_published_list_in_its_order_are_refused(
    world: World, components: tuple[str, ...]
) -> None:
    merchant, _, code = await ready_code(world)
    body = as_json({"code": code, "item_code": "wl-030"})
    if "@authority" in components or "content-type" in components:
        # signed over the values the service would see, so only the component rule can refuse it
        headers = _with_extra_component_values(world, merchant, body, components)
    else:
        headers = hand_signed(world, merchant, "POST", "/v1/verifications", body, components=components)
    answer = await send(world, "POST", "/v1/verifications", body, headers)
    assert problem(answer) == (401, "signature_invalid")
    await accepted(await world.verify(merchant, code))


def _with_extra_component_values(
    world: World, merchant: Actor, body: bytes, components: tuple[str, ...]
) -> dict[str, str]:
    message = _Message("POST", ORIGIN + "/v1/verifications", CaseInsensitiveDict({"Content-Type": "application/json"}))  # type: ignore[no-untyped-call]
    signer = HTTPMessageSigner(
        signature_algorithm=algorithms.ED25519,
        key_resolver=MappingKeyResolver(public_keys={}, private_keys={merchant.key_id: merchant.key}),
    )
    signer.sign(
        message,
        key_id=merchant.key_id,
        created=dt.datetime.fromtimestamp(world.clock.now(), tz=dt.UTC),
        nonce=fresh_nonce(),
        label="sig1",
        covered_component_ids=components,
        body=body,
    )
    return dict(message.headers.items())


async def test_a_bodiless_signature_on_a_request_with_a_body_is_refused(world: World) -> None:
    """Content-Digest absent from the covered components while there is a body."""
    merchant, _, code = await ready_code(world)
    body = as_json({"code": code, "item_code": "wl-030"})
    headers = library_signed(merchant, "POST", "/v1/verifications", b"", world.clock.now(), fresh_nonce(), {})
    assert "Content-Digest" not in headers
    assert '"content-digest"' not in headers["Signature-Input"]
    answer = await send(world, "POST", "/v1/verifications", body, headers)
    assert problem(answer) == (401, "signature_invalid")
    await accepted(await world.verify(merchant, code))


async def test_a_signed_content_digest_without_the_header_is_refused(world: World) -> None:
    merchant, _, code = await ready_code(world)
    body = as_json({"code": code, "item_code": "wl-030"})
    headers = hand_signed(world, merchant, "POST", "/v1/verifications", body)
    del headers["Content-Digest"]
    answer = await send(world, "POST", "/v1/verifications", body, headers)
    assert problem(answer) == (401, "signature_invalid")


@pytest.mark.parametrize(
    "missing_or_wrong",
    [
        {"created": None},
        {"created": "1700000000"},
        {"nonce": None},
        {"nonce": "short"},
        {"nonce": "n" * 129},
        {"keyid": None},
        {"alg": "hmac-sha256"},
        {"alg": "rsa-pss-sha512"},
    ],
    ids=["no-created", "created-string", "no-nonce", "short-nonce", "long-nonce", "no-keyid", "hmac", "rsa"],
)
async def test_missing_or_malformed_signature_parameters_are_refused(
    world: World, missing_or_wrong: dict[str, str | None]
) -> None:
    merchant, _, code = await ready_code(world)
    body = as_json({"code": code, "item_code": "wl-030"})
    headers = hand_signed(world, merchant, "POST", "/v1/verifications", body, params=missing_or_wrong)
    answer = await send(world, "POST", "/v1/verifications", body, headers)
    assert problem(answer) == (401, "signature_invalid")
    await accepted(await world.verify(merchant, code))


async def test_the_alg_parameter_may_be_left_out(world: World) -> None:
    """alg is optional in RFC 9421; the registered key decides the algorithm."""
    merchant, _, code = await ready_code(world)
    body = as_json({"code": code, "item_code": "wl-030"})
    headers = hand_signed(world, merchant, "POST", "/v1/verifications", body, params={"alg": None})
    await accepted(await send(world, "POST", "/v1/verifications", body, headers))


# --- signature_invalid: what was signed is not what arrived ----------------------------------------


async def test_a_body_changed_after_signing_is_refused_and_the_code_is_not_used_up(world: World) -> None:
    merchant, device, code = await ready_code(world)
    signed_body = as_json({"code": code, "item_code": "wl-030"})
    sent_body = as_json({"code": code, "item_code": "wl-011"})  # the hotel item discloses the ID number
    headers = library_signed(merchant, "POST", "/v1/verifications", signed_body, world.clock.now(), fresh_nonce(), {})
    answer = await send(world, "POST", "/v1/verifications", sent_body, headers)
    assert problem(answer) == (401, "signature_invalid")

    history = await world.signed(device, "GET", f"/v1/cards/{device.ids['card_id']}/verifications")
    assert history.status_code == 200, history.text
    assert history.json()["items"] == []
    verified = await accepted(await world.verify(merchant, code, "wl-030"))
    assert "id_number" not in verified["card"]


async def test_a_content_digest_that_does_not_match_the_body_is_refused_even_when_signed(world: World) -> None:
    """The signature is good over the header it covers; only the digest check can catch the swap."""
    merchant, _, code = await ready_code(world)
    body = as_json({"code": code, "item_code": "wl-030"})
    other = as_json({"code": code, "item_code": "wl-011"})
    for digest in (sha256_digest(other), f"sha-512=:{b64(hashlib.sha512(other).digest())}:"):
        headers = hand_signed(world, merchant, "POST", "/v1/verifications", body, digest=digest)
        answer = await send(world, "POST", "/v1/verifications", body, headers)
        assert problem(answer) == (401, "signature_invalid"), digest
    await accepted(await world.verify(merchant, code))


@pytest.mark.parametrize(
    "digest",
    [
        "md5=:{md5}:",
        "sha-256=not-bytes",
        "sha-256=:{sha256}:, sha-512=:AAAA:",
        "this is ( not a dictionary",
    ],
    ids=["unsupported-algorithm", "not-bytes", "one-of-two-wrong", "not-sf"],
)
async def test_a_content_digest_that_cannot_vouch_for_the_body_is_refused(world: World, digest: str) -> None:
    merchant, _, code = await ready_code(world)
    body = as_json({"code": code, "item_code": "wl-030"})
    digest = digest.format(md5=b64(hashlib.md5(body).digest()), sha256=b64(hashlib.sha256(body).digest()))
    headers = hand_signed(world, merchant, "POST", "/v1/verifications", body, digest=digest)
    answer = await send(world, "POST", "/v1/verifications", body, headers)
    assert problem(answer) == (401, "signature_invalid")


async def test_a_content_digest_replaced_to_match_a_new_body_breaks_the_signature(world: World) -> None:
    merchant, _, code = await ready_code(world)
    signed_body = as_json({"code": code, "item_code": "wl-030"})
    sent_body = as_json({"code": code, "item_code": "wl-011"})
    headers = library_signed(
        merchant,
        "POST",
        "/v1/verifications",
        signed_body,
        world.clock.now(),
        fresh_nonce(),
        {"Content-Digest": sha256_digest(sent_body)},
    )
    answer = await send(world, "POST", "/v1/verifications", sent_body, headers)
    assert problem(answer) == (401, "signature_invalid")
    await accepted(await world.verify(merchant, code))


@pytest.mark.parametrize(
    ("signed_method", "signed_target", "sent_target"),
    [
        ("POST", "/v1/verifications?terminal=T1", "/v1/verifications"),
        ("POST", "/v1/verifications", "/v1/verifications?terminal=T1"),
        ("POST", "/v1/verifications?terminal=T1", "/v1/verifications?terminal=T2"),
        ("POST", "/v1/bills", "/v1/verifications"),
        ("POST", "/v1/federation/verifications", "/v1/verifications"),
        ("PUT", "/v1/verifications", "/v1/verifications"),
        ("GET", "/v1/verifications", "/v1/verifications"),
    ],
    ids=["query-dropped", "query-added", "query-changed", "path", "path-prefix", "method-put", "method-get"],
)
async def test_a_tampered_method_path_or_query_is_refused(
    world: World, signed_method: str, signed_target: str, sent_target: str
) -> None:
    merchant, _, code = await ready_code(world)
    body = as_json({"code": code, "item_code": "wl-030"})
    headers = library_signed(merchant, signed_method, signed_target, body, world.clock.now(), fresh_nonce(), {})
    answer = await send(world, "POST", sent_target, body, headers)
    assert problem(answer) == (401, "signature_invalid")
    await accepted(await world.verify(merchant, code))


async def test_a_signed_query_string_that_arrives_unchanged_is_accepted(world: World) -> None:
    merchant, _, code = await ready_code(world)
    body = as_json({"code": code, "item_code": "wl-030"})
    target = "/v1/verifications?terminal=T1&lane=%E4%B8%80"
    headers = hand_signed(world, merchant, "POST", target, body)
    await accepted(await send(world, "POST", target, body, headers))


@pytest.mark.parametrize("make_key", [ed25519_actor, p256_actor], ids=["ed25519", "p256"])
async def test_a_signature_made_with_another_registered_key_is_refused(world: World, make_key: Any) -> None:
    victim = await world.merchant(["wl-030"], actor=make_key())
    attacker = await world.merchant(["wl-030"], actor=make_key(), name="别家商户")
    device = await world.device("张小三")
    code = await world.code(device)
    body = as_json({"code": code, "item_code": "wl-030"})
    headers = hand_signed(world, victim, "POST", "/v1/verifications", body, sign_with=attacker.key)
    answer = await send(world, "POST", "/v1/verifications", body, headers)
    assert problem(answer) == (401, "signature_invalid")
    await accepted(await world.verify(victim, code))


@pytest.mark.parametrize(
    ("make_key", "claimed"),
    [(ed25519_actor, ALG_P256), (p256_actor, ALG_ED25519)],
    ids=["ed25519-key-claims-ecdsa", "p256-key-claims-ed25519"],
)
async def test_an_alg_that_does_not_match_the_registered_key_is_refused(
    world: World, make_key: Any, claimed: str
) -> None:
    """The signature itself verifies with the registered key (both are 64 bytes); only the alg check refuses."""
    merchant = await world.merchant(["wl-030"], actor=make_key())
    device = await world.device("张小三")
    code = await world.code(device)
    body = as_json({"code": code, "item_code": "wl-030"})
    headers = hand_signed(world, merchant, "POST", "/v1/verifications", body, params={"alg": claimed})
    answer = await send(world, "POST", "/v1/verifications", body, headers)
    assert problem(answer) == (401, "signature_invalid")
    await accepted(await world.verify(merchant, code))


# --- signature_expired ---------------------------------------------------------------------------


@pytest.mark.parametrize("offset", [-302, 302, -3600, 86400], ids=["past", "future", "hour-old", "day-ahead"])
async def test_created_more_than_300_s_from_the_server_clock_is_expired(world: World, offset: int) -> None:
    merchant, _, code = await ready_code(world)
    answer = await world.signed(
        merchant,
        "POST",
        "/v1/verifications",
        {"code": code, "item_code": "wl-030"},
        created=world.clock.now() + offset,
    )
    assert problem(answer) == (401, "signature_expired")
    await accepted(await world.verify(merchant, code))


@pytest.mark.parametrize("offset", [-295, 295], ids=["past", "future"])
async def test_created_just_inside_the_window_is_accepted(world: World, offset: int) -> None:
    merchant, _, code = await ready_code(world)
    answer = await world.signed(
        merchant,
        "POST",
        "/v1/verifications",
        {"code": code, "item_code": "wl-030"},
        created=world.clock.now() + offset,
    )
    await accepted(answer)


async def test_a_code_request_held_back_longer_than_the_window_is_expired(world: World) -> None:
    device = await world.device("张小三")
    signed_at = world.clock.now()
    world.clock.advance(290)
    held = await world.signed(device, "POST", "/v1/codes", {}, created=signed_at)
    assert held.status_code == 201, held.text

    signed_at = world.clock.now()
    world.clock.advance(302)
    held = await world.signed(device, "POST", "/v1/codes", {}, created=signed_at)
    assert problem(held) == (401, "signature_expired")
    assert (await world.signed(device, "POST", "/v1/codes", {})).status_code == 201


async def test_a_server_clock_behind_the_client_refuses_requests_from_its_future(world: World) -> None:
    device = await world.device("张小三")
    signed_at = world.clock.now()
    world.clock.advance(-302)
    answer = await world.signed(device, "POST", "/v1/codes", {}, created=signed_at)
    assert problem(answer) == (401, "signature_expired")


# --- nonce_reused --------------------------------------------------------------------------------


async def test_the_same_nonce_twice_from_one_key_is_refused_as_nonce_reused(world: World) -> None:
    merchant = await world.merchant(["wl-030"])
    device = await world.device("张小三")
    first, second = await world.code(device), await world.code(device)
    nonce = fresh_nonce()
    answer = await world.signed(
        merchant, "POST", "/v1/verifications", {"code": first, "item_code": "wl-030"}, nonce=nonce
    )
    await accepted(answer)
    # a new request, new body, later on: the nonce is still spent
    world.clock.advance(200)
    second = await world.code(device)
    replay = await world.signed(
        merchant, "POST", "/v1/verifications", {"code": second, "item_code": "wl-030"}, nonce=nonce
    )
    assert problem(replay) == (401, "nonce_reused")
    await accepted(await world.verify(merchant, second))


async def test_an_exact_replay_of_a_code_request_is_refused(world: World) -> None:
    device = await world.device("张小三")
    body = b"{}"
    headers = hand_signed(world, device, "POST", "/v1/codes", body)
    assert (await send(world, "POST", "/v1/codes", body, headers)).status_code == 201
    assert problem(await send(world, "POST", "/v1/codes", body, headers)) == (401, "nonce_reused")
    # on another endpoint too
    card = device.ids["card_id"]
    other = await world.signed(device, "GET", f"/v1/cards/{card}/verifications", nonce=_nonce_of(headers))
    assert problem(other) == (401, "nonce_reused")


def _nonce_of(headers: dict[str, str]) -> str:
    found = re.search(r';nonce="([^"]+)"', headers["Signature-Input"])
    assert found
    return found.group(1)


async def test_the_same_nonce_string_from_another_client_is_fine(world: World) -> None:
    library = await world.merchant(["wl-030"])
    hotel = await world.merchant(["wl-011"], actor=p256_actor(), name="武隆某酒店")
    device = await world.device("张小三")
    nonce = fresh_nonce()
    for merchant, item in ((library, "wl-030"), (hotel, "wl-011")):
        code = await world.code(device)
        answer = await world.signed(
            merchant, "POST", "/v1/verifications", {"code": code, "item_code": item}, nonce=nonce
        )
        await accepted(answer)
    other_device = await world.device("李四")
    assert (await world.signed(other_device, "POST", "/v1/codes", {}, nonce=nonce)).status_code == 201


async def test_a_refused_signature_does_not_spend_its_nonce(world: World) -> None:
    """Nobody can burn a client's nonces by sending garbage under its keyid."""
    merchant, _, code = await ready_code(world)
    body = as_json({"code": code, "item_code": "wl-030"})
    nonce = fresh_nonce()
    forged = hand_signed(
        world, merchant, "POST", "/v1/verifications", body, params={"nonce": nonce}, sign_with=p256_actor().key
    )
    assert problem(await send(world, "POST", "/v1/verifications", body, forged)) == (401, "signature_invalid")
    answer = await world.signed(
        merchant, "POST", "/v1/verifications", {"code": code, "item_code": "wl-030"}, nonce=nonce
    )
    await accepted(answer)


# --- unknown_client, client_disabled, forbidden ---------------------------------------------------


async def test_an_unknown_keyid_is_refused_as_unknown_client(world: World) -> None:
    merchant, _, code = await ready_code(world)
    stranger = ed25519_actor()
    for keyid in ("key_doesnotexist", merchant.key_id + "x"):
        stranger.key_id = keyid
        answer = await world.signed(stranger, "POST", "/v1/verifications", {"code": code, "item_code": "wl-030"})
        assert problem(answer) == (401, "unknown_client")
    await accepted(await world.verify(merchant, code))


async def test_a_disabled_merchant_is_refused_until_re_enabled(world: World) -> None:
    merchant, _, code = await ready_code(world)
    merchant_id = merchant.ids["merchant_id"]
    off = await world.admin("POST", f"/v1/admin/merchants/{merchant_id}/status", {"status": "disabled"})
    assert off.status_code == 200, off.text
    assert problem(await world.verify(merchant, code)) == (403, "client_disabled")

    on = await world.admin("POST", f"/v1/admin/merchants/{merchant_id}/status", {"status": "active"})
    assert on.status_code == 200, on.text
    await accepted(await world.verify(merchant, code))


async def test_a_disabled_merchant_with_a_forged_signature_learns_nothing_more(world: World) -> None:
    merchant, _, code = await ready_code(world)
    merchant_id = merchant.ids["merchant_id"]
    await world.admin("POST", f"/v1/admin/merchants/{merchant_id}/status", {"status": "disabled"})
    body = as_json({"code": code, "item_code": "wl-030"})
    forged = hand_signed(world, merchant, "POST", "/v1/verifications", body, sign_with=ed25519_actor().key)
    assert problem(await send(world, "POST", "/v1/verifications", body, forged)) == (401, "signature_invalid")


async def test_a_disabled_channel_cannot_enrol_until_re_enabled(world: World) -> None:
    channel = await world.channel()
    holder = await world.cardholder("王五")
    enrolment = {
        "id_number": holder["id_number"],
        "name": "王五",
        "device_public_key": p256_actor().jwk,
        "device_name": "phone",
    }
    channel_id = channel.ids["channel_id"]
    off = await world.admin("POST", f"/v1/admin/channels/{channel_id}/status", {"status": "disabled"})
    assert off.status_code == 200, off.text
    assert problem(await world.signed(channel, "POST", "/v1/enrolments", enrolment)) == (403, "client_disabled")

    on = await world.admin("POST", f"/v1/admin/channels/{channel_id}/status", {"status": "active"})
    assert on.status_code == 200, on.text
    answer = await world.signed(channel, "POST", "/v1/enrolments", enrolment)
    assert answer.status_code == 201, answer.text
    assert answer.json()["card_id"] == holder["card_id"]


async def test_disabling_one_merchant_leaves_others_working(world: World) -> None:
    merchant, device, code = await ready_code(world)
    other = await world.merchant(["wl-030"], name="另一家图书馆")
    await world.admin("POST", f"/v1/admin/merchants/{other.ids['merchant_id']}/status", {"status": "disabled"})
    await accepted(await world.verify(merchant, code))
    assert problem(await world.verify(other, await world.code(device))) == (403, "client_disabled")


async def test_a_device_key_may_not_verify_codes(world: World) -> None:
    merchant, device, code = await ready_code(world)
    answer = await world.signed(device, "POST", "/v1/verifications", {"code": code, "item_code": "wl-030"})
    assert problem(answer) == (403, "forbidden")
    await accepted(await world.verify(merchant, code))


async def test_merchant_and_channel_keys_may_not_mint_codes_and_a_channel_may_not_verify(world: World) -> None:
    merchant, _, code = await ready_code(world)
    channel = await world.channel()
    assert problem(await world.signed(merchant, "POST", "/v1/codes", {})) == (403, "forbidden")
    assert problem(await world.signed(channel, "POST", "/v1/codes", {})) == (403, "forbidden")
    assert problem(await world.verify(channel, code)) == (403, "forbidden")
    await accepted(await world.verify(merchant, code))


async def test_a_device_may_not_enrol_another_device(world: World) -> None:
    device = await world.device("张小三")
    holder = await world.cardholder("赵六", id_number())
    enrolment = {
        "id_number": holder["id_number"],
        "name": "赵六",
        "device_public_key": p256_actor().jwk,
        "device_name": "p",
    }
    assert problem(await world.signed(device, "POST", "/v1/enrolments", enrolment)) == (403, "forbidden")


# --- both key types ------------------------------------------------------------------------------


@pytest.mark.parametrize("make_key", [ed25519_actor, p256_actor], ids=["ed25519", "p256"])
async def test_merchants_and_devices_sign_with_either_key_type(world: World, make_key: Any) -> None:
    merchant = await world.merchant(["wl-030"], actor=make_key())
    channel = await world.channel(actor=make_key())
    device = await world.device("张小三", channel=channel, actor=make_key())
    answer = await world.signed(device, "POST", "/v1/codes", {})
    assert answer.status_code == 201, answer.text
    verified = await accepted(await world.verify(merchant, answer.json()["code"]))
    assert verified["card"]["name_masked"] == "张*三"
    history = await world.signed(device, "GET", f"/v1/cards/{device.ids['card_id']}/verifications")
    assert history.status_code == 200, history.text
    assert [item["verification_id"] for item in history.json()["items"]] == [verified["verification_id"]]


async def test_a_code_request_without_a_body_signs_only_method_path_and_query(world: World) -> None:
    device = await world.device("张小三")
    headers = hand_signed(world, device, "POST", "/v1/codes", b"")
    assert "Content-Digest" not in headers
    answer = await send(world, "POST", "/v1/codes", b"", headers)
    assert answer.status_code == 201, answer.text


# --- interoperability: the http-message-signatures library as the client --------------------------


@dataclass
class _Message:
    """The request shape http-message-signatures signs: method, absolute URL, headers."""

    method: str
    url: str
    headers: CaseInsensitiveDict


@pytest.mark.parametrize(
    ("make_key", "algorithm"),
    [(ed25519_actor, algorithms.ED25519), (p256_actor, algorithms.ECDSA_P256_SHA256)],
    ids=["ed25519", "ecdsa-p256-sha256"],
)
async def test_a_request_signed_by_the_http_message_signatures_library_is_accepted(
    world: World, make_key: Any, algorithm: Any
) -> None:
    merchant = await world.merchant(["wl-030"], actor=make_key())
    device = await world.device("张小三")
    code = await world.code(device)
    body = json.dumps({"code": code, "item_code": "wl-030"}).encode()
    message = _Message(
        "POST",
        ORIGIN + "/v1/verifications",
        CaseInsensitiveDict({"Content-Type": "application/json"}),  # type: ignore[no-untyped-call]
    )
    signer = HTTPMessageSigner(
        signature_algorithm=algorithm,
        key_resolver=MappingKeyResolver(public_keys={}, private_keys={merchant.key_id: merchant.key}),
    )
    signer.sign(
        message,
        key_id=merchant.key_id,
        created=dt.datetime.fromtimestamp(world.clock.now(), tz=dt.UTC),
        nonce=fresh_nonce(),
        label="sig1",
        covered_component_ids=("@method", "@path", "@query", "content-digest"),
        body=body,
    )
    headers = dict(message.headers.items())
    assert headers["Content-Digest"] == sha256_digest(body)
    assert f'alg="{algorithm.algorithm_id}"' in headers["Signature-Input"]
    verified = await accepted(await send(world, "POST", "/v1/verifications", body, headers))
    assert set(verified["card"]) == {"pseudonym", "name_masked", "region"}

    # and the library's request is as single-use as any other
    assert problem(await send(world, "POST", "/v1/verifications", body, headers)) == (401, "nonce_reused")


# --- sign_request, at unit level ---------------------------------------------------------------


def _flip_one_byte(signature_field: str) -> str:
    label, _, rest = signature_field.partition("=:")
    raw = bytearray(base64.b64decode(rest.rstrip(":")))
    raw[len(raw) // 2] ^= 0x01
    return f"{label}=:{b64(bytes(raw))}:"


@pytest.mark.parametrize("make_key", [ed25519_actor, p256_actor], ids=["ed25519", "p256"])
@pytest.mark.parametrize("body", [b"", b'{"code":"EC1:x","item_code":"wl-030"}'], ids=["no-body", "body"])
def test_sign_request_output_verifies_and_one_flipped_byte_does_not(make_key: Any, body: bytes) -> None:
    actor = make_key()
    url = "https://ecard.example/v1/verifications?terminal=T1"
    headers = sign_request("POST", url, body, actor.key, "key_unit", actor.alg, created=1_700_000_000.0)
    params = parse_signature_params(headers, has_body=bool(body))
    assert params.keyid == "key_unit"
    assert params.created == 1_700_000_000
    assert params.alg == actor.alg
    assert params.components == (WITH_BODY if body else BASE)
    public = actor.key.public_key()
    verify_signature(params, public, actor.alg, "POST", "/v1/verifications", "terminal=T1", headers, body)

    tampered = {**headers, "Signature": _flip_one_byte(headers["Signature"])}
    with pytest.raises(Refusal) as refused:
        verify_signature(params, public, actor.alg, "POST", "/v1/verifications", "terminal=T1", tampered, body)
    assert refused.value.code == "signature_invalid"
    # and the query is covered: the same headers do not vouch for another one
    with pytest.raises(Refusal):
        verify_signature(params, public, actor.alg, "POST", "/v1/verifications", "terminal=T2", headers, body)


def test_sign_request_gives_every_request_its_own_nonce() -> None:
    actor = ed25519_actor()
    nonces = {
        _nonce_of(sign_request("POST", ORIGIN + "/v1/codes", b"{}", actor.key, "k", actor.alg)) for _ in range(20)
    }
    assert len(nonces) == 20


@pytest.mark.parametrize("body", [b"", b'{"code":"EC1:x","item_code":"wl-030"}'], ids=["no-body", "body"])
@pytest.mark.parametrize("target", ["/v1/verifications", "/v1/bills?out_bill_no=B-1"], ids=["path", "query"])
def test_sign_request_writes_what_the_http_message_signatures_library_writes(body: bytes, target: str) -> None:
    """Ed25519 signatures are deterministic, so the hand-built headers and the library's must be byte-equal."""
    actor = ed25519_actor()
    created, nonce = 1_700_000_000, fresh_nonce()
    ours = sign_request("POST", ORIGIN + target, body, actor.key, "cq:kid", actor.alg, created=created, nonce=nonce)
    message = _Message("POST", ORIGIN + target, CaseInsensitiveDict())  # type: ignore[no-untyped-call]
    signer = HTTPMessageSigner(
        signature_algorithm=algorithms.ED25519,
        key_resolver=MappingKeyResolver(public_keys={}, private_keys={"cq:kid": actor.key}),
    )
    signer.sign(
        message,
        key_id="cq:kid",
        created=dt.datetime.fromtimestamp(created, tz=dt.UTC),
        nonce=nonce,
        label="sig1",
        covered_component_ids=WITH_BODY if body else BASE,
        body=body or None,
    )
    assert ours == dict(message.headers.items())


def test_a_p256_signature_of_sign_request_verifies_with_the_library() -> None:
    actor = p256_actor()
    body = b'{"event":"bill.paid"}'
    headers = sign_request("POST", ORIGIN + "/notify", body, actor.key, "cq:kid", actor.alg)
    message = _Message("POST", ORIGIN + "/notify", CaseInsensitiveDict(headers))  # type: ignore[no-untyped-call]
    verifier = HTTPMessageVerifier(
        signature_algorithm=algorithms.ECDSA_P256_SHA256,
        key_resolver=MappingKeyResolver(public_keys={"cq:kid": actor.key.public_key()}, private_keys={}),
    )
    (result,) = verifier.verify(message)
    assert result.parameters["keyid"] == "cq:kid"
