"""POST /v1/verifications: a merchant or terminal checks a code for one catalog item."""

from __future__ import annotations

import time
from typing import Any

from litestar import Controller, Request, post
from litestar.di import NamedDependency
from litestar.params import JSONBody

from ecard.clients import ClientKind, Principal
from ecard.clients.http import SIGNED_PROBLEMS, signed_by
from ecard.kit.clock import iso
from ecard.kit.infra import unavailable_code
from ecard.kit.problems import Refusal, problems
from ecard.ops.metrics import VERIFICATIONS, VERIFY_SECONDS
from ecard.verify.models import VerificationAnswer, VerificationRequest, storable
from ecard.verify.service import Verification, VerifyDeps, verify

REFUSALS = (
    "malformed_code",
    "unknown_issuer",
    "unknown_key",
    "key_revoked",
    "bad_signature",
    "code_expired",
    "code_not_yet_valid",
    "code_already_used",
    "card_suspended",
    "card_cancelled",
    "item_unknown",
    "card_mode_not_accepted",
    "merchant_not_entitled",
    "item_not_in_joint_list",
    "card_not_linked",
    "forbidden",
    "issuer_unavailable",
    "database_unavailable",
    "cache_unavailable",
)


class VerificationController(Controller):
    path = "/v1/verifications"
    tags = ["verification"]  # noqa: RUF012
    dependencies = {"principal": signed_by(ClientKind.MERCHANT, ClientKind.TERMINAL, defer_nonce=True)}  # noqa: RUF012

    @post(
        "/",
        status_code=200,
        summary="Verify a dynamic code for a catalog item",
        responses=problems(*SIGNED_PROBLEMS, *REFUSALS),
    )
    async def create(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        data: JSONBody[VerificationRequest],
    ) -> VerificationAnswer:
        check_place(data.place)
        deps: VerifyDeps = request.app.state.verify_deps
        started = time.perf_counter()
        try:
            result = await verify(principal, data.code, data.item_code, data.terminal_id, data.place, deps)
        except Refusal as refusal:
            VERIFICATIONS.labels(result=refusal.code).inc()
            raise
        except Exception as exc:
            VERIFICATIONS.labels(result=unavailable_code(exc) or "internal_error").inc()
            raise
        finally:
            VERIFY_SECONDS.observe(time.perf_counter() - started)
        VERIFICATIONS.labels(result="accepted").inc()
        return accepted(result)


def accepted(result: Verification) -> VerificationAnswer:
    """The answer of an accepted verification, the same wherever it was decided."""
    return VerificationAnswer(
        result="accepted",
        verification_id=result.verification_id,
        item_code=result.item_code,
        verified_at=iso(result.verified_at),
        card=result.card,
    )


def check_place(place: dict[str, Any] | None) -> None:
    if place is not None and not storable(place):
        raise Refusal("invalid_request", "place must not contain U+0000", extra={"fields": ["place"]})
