"""POST /v1/verifications: a merchant or terminal checks a code for one catalog item."""

from __future__ import annotations

import time
from typing import Any

from litestar import Controller, Request, post
from litestar.di import NamedDependency
from litestar.params import JSONBody

from ecard.kit.edge import SIGNED_PROBLEMS, signed_by
from ecard.kit.infra import unavailable_code
from ecard.kit.metrics import VERIFICATIONS, VERIFY_SECONDS
from ecard.kit.principal import ClientKind, Principal
from ecard.kit.problems import problems
from ecard.kit.refusal import Refusal
from ecard.verify.models import REFUSALS, VerificationAnswer, VerificationRequest, accepted, check_place
from ecard.verify.service import VerifyDeps, verify


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
