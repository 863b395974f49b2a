"""One request key per audience, a tag per protocol and the authority covered: a signature made for one receiver
is good at no other. The receivers here are the stand-in bank and the 渝快办 stand-in, trusting a published key set;
the signatures are checked byte for byte against the http-message-signatures library."""

from __future__ import annotations

import datetime as dt
import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from http_message_signatures import HTTPMessageSigner, HTTPMessageVerifier, algorithms
from http_message_signatures.resolvers import MappingKeyResolver
from http_message_signatures.structures import CaseInsensitiveDict

from ecard.federation import TAGS, Audience, IssuerRequestKey
from ecard.kit.jwk import ALG_ED25519, public_jwk, thumbprint
from ecard.kit.refusal import Refusal
from ecard.kit.signing import authority, sign_answer, sign_request, verify_answer
from tests.bank.conftest import KeySetServer
from tests.standins import StandinBank, StandinYukuai
from tests.support import World


def key_for(audience: Audience) -> IssuerRequestKey:
    private = ed25519.Ed25519PrivateKey.generate()
    return IssuerRequestKey("cq", audience, thumbprint(public_jwk(private.public_key())), private)


@dataclass
class Issuer:
    """An issuer's four request keys, published as `GET /v1/issuer/request-keys` publishes them."""

    keys: dict[Audience, IssuerRequestKey]
    served: KeySetServer


@pytest.fixture
def issuer() -> Iterator[Issuer]:
    keys = {audience: key_for(audience) for audience in Audience}
    document = {
        "issuer": "cq",
        "keys": [
            {**public_jwk(k.private.public_key()), "kid": k.kid, "status": "active", "audience": k.audience.value}
            for k in keys.values()
        ],
    }
    with KeySetServer(document) as served:
        yield Issuer(keys, served)


async def _send(url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10.0) as client:
        return await client.post(url, content=body, headers={"Content-Type": "application/json", **headers})


async def refusals_of_signatures_made_for_others(
    keys: dict[Audience, IssuerRequestKey], audience: Audience, url: str, body: bytes
) -> None:
    """Every signature below is good, but made for another receiver or protocol: each is refused."""
    own = keys[audience]
    other = next(a for a in Audience if a is not audience)
    elsewhere = "https://somewhere.else.example" + httpx.URL(url).raw_path.decode()
    cases = {
        # the issuer's key for another audience, with this protocol's tag
        "another audience's key": (
            sign_request("POST", url, body, keys[other].private, keys[other].keyid, ALG_ED25519, tag=own.tag),
            "unknown_client",
        ),
        "no tag": (sign_request("POST", url, body, own.private, own.keyid, ALG_ED25519), "signature_invalid"),
        "another protocol's tag": (
            sign_request("POST", url, body, own.private, own.keyid, ALG_ED25519, tag=TAGS[other]),
            "signature_invalid",
        ),
        "for another server": (own.sign("POST", elsewhere, body), "signature_invalid"),
        # the same, sent with the Host it was signed for: the signature verifies, the authority is not this one
        "for another server, its Host sent along": (
            {**own.sign("POST", elsewhere, body), "Host": "somewhere.else.example"},
            "signature_invalid",
        ),
    }
    for name, (headers, code) in cases.items():
        refused = await _send(url, body, headers)
        assert refused.status_code == 401, (name, refused.text)
        assert refused.json()["code"] == code, (name, refused.text)


async def test_the_bank_moves_money_only_for_its_own_key_tag_and_authority(issuer: Issuer, tmp_path: Path) -> None:
    with StandinBank.running(tmp_path / "bank", trust_keys=issuer.served.url) as bank:
        await bank.credit("crd_audience", 1_000)
        url = f"{bank.base}/v1/transfers"
        body = json.dumps(
            {"transfer_id": "pay_aud", "card_id": "crd_audience", "direction": "debit", "amount_fen": 400, "memo": ""}
        ).encode()
        await refusals_of_signatures_made_for_others(issuer.keys, Audience.BANK, url, body)
        assert await bank.balance("crd_audience") == 1_000
        made = await _send(url, body, issuer.keys[Audience.BANK].sign("POST", url, body))
        assert made.status_code == 201, made.text
        assert await bank.balance("crd_audience") == 600


async def test_the_yukuai_platform_answers_only_its_own_key_tag_and_authority(issuer: Issuer, tmp_path: Path) -> None:
    platform = StandinYukuai(tmp_path, issuer.served.url)
    platform.start()
    try:
        url = f"{platform.base}/v1/codes/resolve"
        body = json.dumps({"code": "YKM:" + secrets.token_urlsafe(18)}).encode()
        await refusals_of_signatures_made_for_others(issuer.keys, Audience.YUKUAI, url, body)
        heard = await _send(url, body, issuer.keys[Audience.YUKUAI].sign("POST", url, body))
        assert (heard.status_code, heard.json()["code"]) == (400, "code_unknown")  # heard, and answered
    finally:
        platform.kill()


async def test_the_issuer_publishes_a_key_per_audience_and_signs_each_peer_with_its_own(world: World) -> None:
    published = (await world.client.get("/v1/issuer/request-keys")).json()
    by_audience = {k["audience"]: k for k in published["keys"]}
    assert list(by_audience) == ["federation", "yukuai", "bank", "callback"]
    assert len({k["kid"] for k in published["keys"]}) == 4
    for audience in Audience:
        one = (await world.client.get("/v1/issuer/request-keys", params={"audience": audience.value})).json()
        assert [k["kid"] for k in one["keys"]] == [by_audience[audience.value]["kid"]]
        signer = world.app.state.request_keys.signer(audience)
        assert signer.keyid == f"cq:{by_audience[audience.value]['kid']}"
        assert signer.tag == TAGS[audience]
    refused = await world.client.get("/v1/issuer/request-keys", params={"audience": "merchants"})
    assert refused.status_code == 400


# --- the same bytes as the http-message-signatures library -------------------------------------------------------


@dataclass
class _Message:
    method: str
    url: str
    headers: CaseInsensitiveDict


@dataclass
class _Answer:
    status_code: int
    headers: CaseInsensitiveDict
    request: _Message


@pytest.mark.parametrize(
    "target", ["https://ecard.sc.example.cn/v1/federation/verifications", "http://127.0.0.1:8001/x?a=1"]
)
def test_a_request_between_systems_is_signed_as_the_library_signs_it(target: str) -> None:
    """Ed25519 is deterministic: our headers and the library's, with @authority and the tag, are byte-equal."""
    key = key_for(Audience.FEDERATION)
    body, created, nonce = b'{"code":"EC1:x"}', 1_700_000_000, secrets.token_urlsafe(16)
    ours = sign_request("POST", target, body, key.private, key.keyid, ALG_ED25519, created, nonce, tag=key.tag)
    message = _Message("POST", target, CaseInsensitiveDict())  # type: ignore[no-untyped-call]
    HTTPMessageSigner(
        signature_algorithm=algorithms.ED25519,
        key_resolver=MappingKeyResolver(public_keys={}, private_keys={key.keyid: key.private}),
    ).sign(
        message,
        key_id=key.keyid,
        created=dt.datetime.fromtimestamp(created, tz=dt.UTC),
        nonce=nonce,
        label="sig1",
        tag=key.tag,
        covered_component_ids=("@method", "@authority", "@path", "@query", "content-digest"),
        body=body,
    )
    assert ours == dict(message.headers.items())


def test_the_authority_is_host_and_port_in_lower_case_without_the_default_port() -> None:
    assert authority("https://ECARD.sc.example.cn:443/v1") == "ecard.sc.example.cn"
    assert authority("http://127.0.0.1:80/") == "127.0.0.1"
    assert authority("http://127.0.0.1:8001/v1?a=1") == "127.0.0.1:8001"
    assert authority("https://[::1]:8443/") == "[::1]:8443"


def test_a_signed_answer_verifies_with_the_library_and_binds_the_request_it_answers() -> None:
    key = key_for(Audience.FEDERATION)
    url = "https://ecard.cq.example.cn/v1/federation/verifications"
    request_headers = key.sign("POST", url, b'{"code":"EC1:x"}')
    body = b'{"result":"accepted"}'
    headers = key.sign_answer(200, body, request_headers)

    request = _Message("POST", url, CaseInsensitiveDict(request_headers))  # type: ignore[no-untyped-call]
    answer = _Answer(200, CaseInsensitiveDict(headers), request)  # type: ignore[no-untyped-call]
    (verified,) = HTTPMessageVerifier(
        signature_algorithm=algorithms.ED25519,
        key_resolver=MappingKeyResolver(public_keys={key.keyid: key.private.public_key()}, private_keys={}),
    ).verify(answer, expect_tag=key.tag)
    assert verified.parameters["keyid"] == key.keyid

    public = key.private.public_key()
    now = dt.datetime.now(dt.UTC).timestamp()
    verify_answer(200, headers, body, request_headers, public, ALG_ED25519, key.keyid, key.tag, now, 300)
    # the same answer does not answer another request of the same partner
    another = key.sign("POST", url, b'{"code":"EC1:x"}')
    with pytest.raises(Refusal) as refused:
        verify_answer(200, headers, body, another, public, ALG_ED25519, key.keyid, key.tag, now, 300)
    assert refused.value.code == "signature_invalid"
    stranger = ed25519.Ed25519PrivateKey.generate()
    forged = sign_answer(200, body, request_headers, stranger, key.keyid, ALG_ED25519, key.tag)
    with pytest.raises(Refusal):
        verify_answer(200, forged, body, request_headers, public, ALG_ED25519, key.keyid, key.tag, now, 300)
    # nor another status, nor another protocol's answer
    with pytest.raises(Refusal):
        verify_answer(201, headers, body, request_headers, public, ALG_ED25519, key.keyid, key.tag, now, 300)
    with pytest.raises(Refusal):
        verify_answer(200, headers, body, request_headers, public, ALG_ED25519, key.keyid, "ecard-bank", now, 300)
