"""API.md, "Signed requests": RFC 9421 signatures with Content-Digest, `created`, a single-use `nonce`, the `keyid`."""

from __future__ import annotations

import base64
import hashlib
import json
import os

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from ecard.kit.signing import sign_request
from tests.contract.support import Integrator, problem_of
from tests.support import Actor, ed25519_actor, p256_actor


def by_the_letter(actor: Actor, method: str, url: str, body: bytes, created: int) -> dict[str, str]:
    """The headers exactly as API.md writes them, parameters in its order: created, nonce, keyid, alg."""
    path, _, query = url.partition("://")[2].partition("/")[2].partition("?")
    lines = [f'"@method": {method}', f'"@path": /{path}', f'"@query": ?{query}']
    components = '"@method" "@path" "@query"'
    headers = {}
    if body:
        digest = f"sha-256=:{base64.b64encode(hashlib.sha256(body).digest()).decode()}:"
        headers["Content-Digest"] = digest
        lines.append(f'"content-digest": {digest}')
        components += ' "content-digest"'
    nonce = base64.b64encode(os.urandom(12)).decode()
    params = f'({components});created={created};nonce="{nonce}";keyid="{actor.key_id}";alg="{actor.alg}"'
    lines.append(f'"@signature-params": {params}')
    base = "\n".join(lines).encode()
    if isinstance(actor.key, ed25519.Ed25519PrivateKey):
        raw = actor.key.sign(base)
    else:
        r, s = decode_dss_signature(actor.key.sign(base, ec.ECDSA(hashes.SHA256())))
        raw = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return {**headers, "Signature-Input": f"sig1={params}", "Signature": f"sig1=:{base64.b64encode(raw).decode()}:"}


async def test_signature_input_and_signature_as_api_md_writes_them_are_accepted(api: Integrator) -> None:
    """`Signature-Input: sig1=(<components>);created=<unix>;nonce="<random>";keyid="<key id>";alg="<...>"`."""
    phone = await api.phone()
    body = b"{}"
    url = f"{api.client.base_url}/v1/codes"

    headers = by_the_letter(phone, "POST", url, body, int(api.parties.clock.now()))
    answer = await api.client.post("/v1/codes", content=body, headers={"Content-Type": "application/json", **headers})

    assert answer.status_code == 201, answer.text


async def test_components_without_a_body_are_method_path_and_query(api: Integrator) -> None:
    """components: `"@method" "@path" "@query"`, plus `"content-digest"` when there is a body."""
    phone = await api.phone()
    path = f"/v1/cards/{phone.ids['card_id']}/verifications"

    headers = by_the_letter(phone, "GET", f"{api.client.base_url}{path}", b"", int(api.parties.clock.now()))
    answer = await api.client.get(path, headers=headers)

    assert "Content-Digest" not in headers
    assert answer.status_code == 200, answer.text


async def test_ed25519_and_ecdsa_p256_keys_both_sign(api: Integrator) -> None:
    """`alg="<ed25519|ecdsa-p256-sha256>"`."""
    ed_phone = await api.phone(actor=ed25519_actor())
    p256_phone = await api.phone(actor=p256_actor())

    assert (await api.signed(ed_phone, "POST", "/v1/codes", {})).status_code == 201
    assert (await api.signed(p256_phone, "POST", "/v1/codes", {})).status_code == 201


async def test_a_request_without_a_signature_is_signature_missing(api: Integrator) -> None:
    """Refusals: 401 with problem code `signature_missing`."""
    answer = await api.client.post("/v1/codes", json={})

    assert problem_of(answer) == (401, "signature_missing")


async def test_a_signature_that_does_not_cover_the_body_sent_is_signature_invalid(api: Integrator) -> None:
    """Refusals: 401 `signature_invalid` (the Content-Digest of RFC 9530 no longer matches)."""
    merchant = await api.merchant(["wl-030"])
    url = f"{api.client.base_url}/v1/verifications"
    signed_body = json.dumps({"code": "EC1:AAAA", "item_code": "wl-030"}).encode()
    headers = sign_request("POST", url, signed_body, merchant.key, merchant.key_id, merchant.alg)
    sent = json.dumps({"code": "EC1:AAAA", "item_code": "wl-011"}).encode()

    answer = await api.client.post(
        "/v1/verifications", content=sent, headers={"Content-Type": "application/json", **headers}
    )

    assert problem_of(answer) == (401, "signature_invalid")


async def test_created_more_than_300_s_from_the_servers_clock_is_signature_expired(api: Integrator) -> None:
    """`created` within 300 s of the server's clock; else 401 `signature_expired`."""
    phone = await api.phone()
    url = f"{api.client.base_url}/v1/codes"
    now = api.parties.clock.now()

    for created in (now - 301, now + 301):
        headers = sign_request("POST", url, b"{}", phone.key, phone.key_id, phone.alg, created=created)
        answer = await api.client.post(
            "/v1/codes", content=b"{}", headers={"Content-Type": "application/json", **headers}
        )
        assert problem_of(answer) == (401, "signature_expired")
    headers = sign_request("POST", url, b"{}", phone.key, phone.key_id, phone.alg, created=now - 290)
    within = await api.client.post("/v1/codes", content=b"{}", headers={"Content-Type": "application/json", **headers})
    assert within.status_code == 201, within.text


async def test_a_nonce_is_accepted_once(api: Integrator) -> None:
    """A `nonce` is accepted once; again: 401 `nonce_reused`."""
    phone = await api.phone()
    url = f"{api.client.base_url}/v1/codes"
    headers = {
        "Content-Type": "application/json",
        **sign_request("POST", url, b"{}", phone.key, phone.key_id, phone.alg, created=api.parties.clock.now()),
    }

    first = await api.client.post("/v1/codes", content=b"{}", headers=headers)
    again = await api.client.post("/v1/codes", content=b"{}", headers=headers)

    assert first.status_code == 201, first.text
    assert problem_of(again) == (401, "nonce_reused")


async def test_a_keyid_the_server_never_gave_is_unknown_client(api: Integrator) -> None:
    """`keyid` is the key id the server gave the client; another: 401 `unknown_client`."""
    stranger = ed25519_actor()
    stranger.key_id = "key_notregistered0000000000"

    answer = await api.signed(stranger, "POST", "/v1/codes", {})

    assert problem_of(answer) == (401, "unknown_client")


async def test_a_disabled_client_is_client_disabled(api: Integrator) -> None:
    """403 `client_disabled`."""
    merchant = await api.merchant(["wl-030"])
    disabled = await api.admin(
        "POST", f"/v1/admin/merchants/{merchant.ids['merchant_id']}/status", {"status": "disabled"}
    )
    assert disabled.status_code == 200, disabled.text

    answer = await api.verify(merchant, "EC1:AAAA", "wl-030")

    assert problem_of(answer) == (403, "client_disabled")


async def test_the_openapi_document_describes_the_signing(api: Integrator) -> None:
    """The OpenAPI document the service serves keeps in step with API.md: it names the RFC 9421 headers."""
    document = (await api.client.get("/schema/openapi.json")).json()

    schemes = document["components"]["securitySchemes"]
    signing = schemes["rfc9421"]
    assert (signing["type"], signing["in"], signing["name"]) == ("apiKey", "header", "Signature")
    for named in ("Signature-Input", "Content-Digest", "created", "nonce", "keyid", "API.md"):
        assert named in signing["description"]
    assert (schemes["operator"]["type"], schemes["operator"]["scheme"]) == ("http", "bearer")
