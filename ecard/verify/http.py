"""POST /v1/verifications: a merchant or terminal checks a code for one catalog item; the holder's history."""

from __future__ import annotations

import time
from typing import Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from ecard.kit.edge import SIGNED_PROBLEMS, signed_by
from ecard.kit.infra import unavailable_code
from ecard.kit.metrics import VERIFICATIONS, VERIFY_SECONDS
from ecard.kit.principal import ClientKind, Principal
from ecard.kit.problems import problems
from ecard.kit.refusal import Refusal
from ecard.verify.models import (
    REFUSALS,
    History,
    Timeline,
    VerificationAnswer,
    VerificationRequest,
    accepted,
    check_place,
)
from ecard.verify.service import VerifyDeps, history, timeline, verify


class VerificationController(Controller):
    path = "/v1/verifications"
    tags = ["verification"]  # noqa: RUF012
    dependencies = {"principal": signed_by(ClientKind.MERCHANT, ClientKind.TERMINAL, defer_nonce=True)}  # noqa: RUF012

    @post(
        "/",
        status_code=200,
        summary="Verify a dynamic code for a catalog item",
        responses=problems(*SIGNED_PROBLEMS, *REFUSALS, "too_many_requests"),
    )
    async def create(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        data: JSONBody[VerificationRequest],
    ) -> VerificationAnswer:
        # From the app's state rather than a second dependency: two beside each other are resolved in an anyio
        # task group on every request, a cost the hot path does not need (load/PROFILE.md).
        verify_deps: VerifyDeps = request.app.state.verify_deps
        check_place(data.place)
        started = time.perf_counter()
        try:
            result = await verify(principal, data.code, data.item_code, data.terminal_id, data.place, verify_deps)
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


class HistoryController(Controller):
    path = "/v1/cards"
    tags = ["devices"]  # noqa: RUF012
    dependencies = {"principal": signed_by(ClientKind.DEVICE)}  # noqa: RUF012

    @get(
        "/{card_id:str}/verifications",
        summary="Every verification of the card: who, where, when, which item, what was disclosed",
        responses=problems(*SIGNED_PROBLEMS, "forbidden"),
    )
    async def history(
        self, verify_deps: NamedDependency[VerifyDeps], principal: NamedDependency[Principal], card_id: FromPath[str]
    ) -> History:
        return History(items=await history(principal, card_id, verify_deps))

    @get(
        "/{card_id:str}/history",
        summary="The card's timeline: its verifications and the disbursements paid into it, newest first",
        responses=problems(*SIGNED_PROBLEMS, "forbidden"),
    )
    async def timeline(
        self, verify_deps: NamedDependency[VerifyDeps], principal: NamedDependency[Principal], card_id: FromPath[str]
    ) -> Timeline:
        return Timeline(items=await timeline(principal, card_id, verify_deps))
