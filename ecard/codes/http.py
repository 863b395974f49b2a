"""HTTP for dynamic codes (devices) and the published issuer keys (everyone)."""

from __future__ import annotations

import re
from typing import Annotated, Any

import msgspec
from litestar import Controller, MediaType, Request, Response, get, post
from litestar.di import NamedDependency

from ecard.codes.keys import KeyRing
from ecard.codes.service import CodeIssuer
from ecard.kit import qr
from ecard.kit.clock import iso
from ecard.kit.edge import SIGNED_PROBLEMS, signed_by
from ecard.kit.metrics import CODES_ISSUED
from ecard.kit.principal import ClientKind, Principal
from ecard.kit.problems import problems
from ecard.kit.refusal import Refusal


class CodeAnswer(msgspec.Struct):
    code: str
    expires_at: str
    refresh_after: str


class CodeRequest(msgspec.Struct, forbid_unknown_fields=True):
    # a family member's card the device's holder may show (API.md "Family accounts"); absent: the device's own
    card_id: Annotated[str, msgspec.Meta(max_length=64)] | None = None


class KeySet(msgspec.Struct):
    issuer: str
    keys: list[dict[str, str | None]]


def _code_request(body: bytes) -> CodeRequest:
    """The body is `{}` (or nothing), or names a family member's card; anything else is the client's mistake."""
    if not body.strip() or body.strip() == b"{}":
        return CodeRequest()
    try:
        return msgspec.json.decode(body, type=CodeRequest)
    except msgspec.ValidationError as exc:
        # msgspec names an unknown field between backticks and never echoes a value
        unknown = re.search(r"unknown field `([^`]{1,64})`", str(exc))
        if unknown is None:
            raise Refusal("invalid_request", 'the request body must be {} or {"card_id": ...}') from exc
        field = unknown.group(1)
        raise Refusal("invalid_request", f"invalid field: {field}", extra={"fields": [field]}) from exc
    except msgspec.DecodeError as exc:
        raise Refusal("invalid_request", "request body is not valid JSON of the expected shape") from exc


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

    @get("/issuer/keys", summary="The issuer's code-signing keys (JWK set with COSE kids)")
    async def keys(self, key_ring: NamedDependency[KeyRing]) -> KeySet:
        # a terminal that refreshes its keys must learn of a revocation as soon as verifications do
        await key_ring.notice_revocations()
        return KeySet(issuer=key_ring.issuer, keys=key_ring.published())
