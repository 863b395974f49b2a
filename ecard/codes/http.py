"""HTTP for dynamic codes (devices) and the published issuer keys (everyone)."""

from __future__ import annotations

import hashlib
import re
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, MediaType, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.types import HTTPScope

from ecard.codes.keys import KeyRing
from ecard.codes.numeric import NumericCodes
from ecard.codes.service import CodeIssuer
from ecard.kit import qr
from ecard.kit.clock import iso
from ecard.kit.crypto import b64u
from ecard.kit.edge import SIGNED_PROBLEMS, signed_by
from ecard.kit.metrics import CODES_ISSUED
from ecard.kit.principal import ClientKind, Principal
from ecard.kit.problems import problems
from ecard.kit.raw import RawAnswer, header, signed_principal
from ecard.kit.refusal import Refusal

# How long a terminal or a cache may reuse the key set unasked; a revocation reaches a fleet within this (plus the
# terminal's own refresh interval). Offline terminals keep using their copy for longer: docs/offline-kit.md.
KEYS_MAX_AGE_S = 300


class CodeAnswer(msgspec.Struct):
    code: str
    expires_at: str
    refresh_after: str


class CodeRequest(msgspec.Struct, forbid_unknown_fields=True):
    # a family member's card the device's holder may show (API.md "Family accounts"); absent: the device's own
    card_id: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    # "numeric": the 18-digit form (docs/numeric-code.md), online-verified only
    form: Literal["ec1", "numeric"] = "ec1"


class KeySet(msgspec.Struct):
    issuer: str
    keys: list[dict[str, str | None]]


def _code_request(body: bytes) -> CodeRequest:
    """The body is `{}` (or nothing), or names a family member's card or the code's form; anything else is the
    client's mistake."""
    if not body.strip() or body.strip() == b"{}":
        return CodeRequest()
    try:
        return msgspec.json.decode(body, type=CodeRequest)
    except msgspec.ValidationError as exc:
        # msgspec names an unknown field between backticks and never echoes a value
        unknown = re.search(r"unknown field `([^`]{1,64})`", str(exc))
        if unknown is None:
            raise Refusal(
                "invalid_request", 'the request body must be {} or {"card_id": ..., "form": "ec1"|"numeric"}'
            ) from exc
        field = unknown.group(1)
        raise Refusal("invalid_request", f"invalid field: {field}", extra={"fields": [field]}) from exc
    except msgspec.DecodeError as exc:
        raise Refusal("invalid_request", "request body is not valid JSON of the expected shape") from exc


async def _numeric(numeric_codes: NumericCodes, principal: Principal, card_id: str | None) -> Response[Any]:
    """The 18-digit form, as JSON only: a scanner reads it off the app's 1D barcode, a clerk types it."""
    minted = await numeric_codes.mint(principal, card_id)
    CODES_ISSUED.labels(format="numeric").inc()
    refresh_after = minted.issued_at + (minted.expires_at - minted.issued_at) * 3 // 4
    return Response(
        content=CodeAnswer(minted.code, iso(minted.expires_at), iso(refresh_after)),
        media_type=MediaType.JSON,
        status_code=201,
        headers={"Cache-Control": "no-store"},
    )


_ANSWER = msgspec.json.Encoder()
_NO_STORE = ((b"cache-control", b"no-store"),)
_DEVICES = frozenset({ClientKind.DEVICE})


async def raw_code(scope: HTTPScope, body: bytes) -> RawAnswer | None:
    """The controller's `mint` as a raw route (ecard/kit/raw.py), for the hot form: an EC1 code as JSON. The
    numeric form, a QR image and a body the controller would refuse go on to the controller."""
    try:
        wanted = _code_request(body)
    except Refusal:
        return None
    accept = header(scope, "accept")
    if wanted.form != "ec1" or "image/png" in accept or "image/svg+xml" in accept:
        return None
    principal = await signed_principal(scope, body, _DEVICES, defer_nonce=True)
    code_issuer: CodeIssuer = scope["app"].state.code_issuer
    issued = await code_issuer.issue(principal, wanted.card_id)
    CODES_ISSUED.labels(format="json").inc()
    answer = CodeAnswer(issued.code, iso(issued.expires_at), iso(issued.refresh_after))
    return RawAnswer(201, _ANSWER.encode(answer), _NO_STORE)


class CodeController(Controller):
    path = "/v1"
    tags = ["codes"]  # noqa: RUF012

    @post(
        "/codes",
        status_code=201,
        dependencies={"principal": signed_by(ClientKind.DEVICE, defer_nonce=True)},
        summary="Mint a dynamic code (JSON, or the QR itself with Accept: image/png or image/svg+xml)",
        responses=problems(
            *SIGNED_PROBLEMS,
            "card_suspended",
            "card_cancelled",
            "forbidden",
            "family_link_ended",
            "family_consent_required",
        ),
    )
    async def mint(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
    ) -> Response[Any]:
        # from the app's state, not a dependency beside `principal` (an anyio task group per request)
        code_issuer: CodeIssuer = request.app.state.code_issuer
        wanted = _code_request(await request.body())
        if wanted.form == "numeric":
            return await _numeric(request.app.state.numeric_codes, principal, wanted.card_id)
        issued = await code_issuer.issue(principal, wanted.card_id)
        accept = request.headers.get("accept", "")
        if "image/png" in accept:
            CODES_ISSUED.labels(format="png").inc()
            return Response(
                content=qr.png(issued.code),
                media_type="image/png",
                status_code=201,
                headers={"Ecard-Code-Expires": iso(issued.expires_at), "Cache-Control": "no-store"},
            )
        if "image/svg+xml" in accept:
            CODES_ISSUED.labels(format="svg").inc()
            return Response(
                content=qr.svg(issued.code),
                media_type="image/svg+xml",
                status_code=201,
                headers={"Ecard-Code-Expires": iso(issued.expires_at), "Cache-Control": "no-store"},
            )
        CODES_ISSUED.labels(format="json").inc()
        return Response(
            content=CodeAnswer(issued.code, iso(issued.expires_at), iso(issued.refresh_after)),
            media_type=MediaType.JSON,
            status_code=201,
            headers={"Cache-Control": "no-store"},
        )

    @get(
        "/issuer/keys",
        summary="The issuer's code-signing keys (JWK set with COSE kids); ETag and If-None-Match (304) for fleets",
        responses={
            304: ResponseSpec(
                data_container=None, description="Not modified: the If-None-Match tag is the current set's ETag"
            )
        },
    )
    async def keys(
        self, request: Request[Any, Any, Any], key_ring: NamedDependency[KeyRing]
    ) -> Response[KeySet | None]:
        # a terminal that refreshes its keys must learn of a revocation as soon as verifications do
        await key_ring.notice_revocations()
        key_set = KeySet(issuer=key_ring.issuer, keys=key_ring.published())
        tag = f'"{b64u(hashlib.sha256(msgspec.json.encode(key_set)).digest()[:16])}"'
        headers = {"ETag": tag, "Cache-Control": f"public, max-age={KEYS_MAX_AGE_S}"}
        if _matches(request.headers.get("if-none-match"), tag):
            return Response(content=None, status_code=304, headers=headers)
        return Response(content=key_set, media_type=MediaType.JSON, headers=headers)


def _matches(if_none_match: str | None, tag: str) -> bool:
    """RFC 9110 §13.1.2: weak comparison against each listed entity tag, or `*`."""
    if if_none_match is None:
        return False
    listed = [part.strip().removeprefix("W/") for part in if_none_match.split(",")]
    return "*" in listed or tag in listed
