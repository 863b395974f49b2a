"""API.md, "Dynamic codes": minting a code (JSON or the QR itself), refusals by card status, the issuer's keys."""

from __future__ import annotations

import base64
from datetime import datetime

import base45
import cbor2
import pytest

from tests.contract.support import Integrator, problem_of


async def test_post_codes_answers_201_code_expires_at_and_refresh_after(api: Integrator) -> None:
    """`POST /v1/codes` (device-signed) `{}` → 201 `{"code":"EC1:...","expires_at","refresh_after"}`."""
    phone = await api.phone()

    answer = await api.signed(phone, "POST", "/v1/codes", {})

    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["code"].startswith("EC1:")
    expires = datetime.fromisoformat(body["expires_at"])
    refresh = datetime.fromisoformat(body["refresh_after"])
    assert refresh < expires


@pytest.mark.parametrize(("accept", "magic"), [("image/png", b"\x89PNG"), ("image/svg+xml", b"<")])
async def test_post_codes_with_an_image_accept_answers_the_qr_and_ecard_code_expires(
    api: Integrator, accept: str, magic: bytes
) -> None:
    """With `Accept: image/png` or `Accept: image/svg+xml` the response is the QR image itself and the code's
    expiry is in the `Ecard-Code-Expires` header."""
    phone = await api.phone()

    answer = await api.signed(phone, "POST", "/v1/codes", {}, Accept=accept)

    assert answer.status_code == 201, answer.text
    assert answer.headers["content-type"].startswith(accept)
    assert answer.content.lstrip().startswith(magic)
    datetime.fromisoformat(answer.headers["Ecard-Code-Expires"])


@pytest.mark.parametrize(("status", "code"), [("suspended", "card_suspended"), ("cancelled", "card_cancelled")])
async def test_a_suspended_or_cancelled_card_gets_no_code(api: Integrator, status: str, code: str) -> None:
    """A suspended or cancelled card gets no code: 403 `card_suspended` / `card_cancelled`."""
    phone = await api.phone()
    assert (await api.card_status(phone.ids["card_id"], status)).status_code == 200

    answer = await api.signed(phone, "POST", "/v1/codes", {})

    assert problem_of(answer) == (403, code)


async def test_get_issuer_keys_publishes_jwks_with_kid_alg_status_and_validity(api: Integrator) -> None:
    """`GET /v1/issuer/keys` (public) → 200 `{"issuer":"cq","keys":[{JWK + "kid" (base64url of the 8-byte COSE
    kid),"alg","status":"active"|"retired"|"revoked","not_before","not_after"}]}`."""
    phone = await api.phone()
    code = await api.code(phone)

    answer = await api.client.get("/v1/issuer/keys")

    assert answer.status_code == 200, answer.text
    assert answer.json()["issuer"] == "cq"
    keys = answer.json()["keys"]
    for key in keys:
        assert {"kty", "kid", "alg", "status", "not_before", "not_after"} <= key.keys()
        assert key["status"] in ("active", "retired", "revoked")
        assert len(base64.urlsafe_b64decode(key["kid"] + "=" * (-len(key["kid"]) % 4))) == 8
    # the code's COSE_Sign1 names its key by that kid
    sign1 = cbor2.loads(base45.b45decode(code.removeprefix("EC1:")))
    protected = cbor2.loads(sign1.value[0] if isinstance(sign1, cbor2.CBORTag) else sign1[0])
    kid = base64.urlsafe_b64encode(protected[4]).rstrip(b"=").decode()
    assert kid in {k["kid"] for k in keys if k["status"] == "active"}
