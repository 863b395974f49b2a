"""POST /v1/verifications: a merchant or terminal checks a code for one catalog item; the holder's history.

The check is served as a raw route (`raw_verification`, ecard/kit/raw.py); the controller documents it and
answers what the raw route hands on (a body that is not a well-formed request, or too large)."""

from __future__ import annotations

import time
from typing import Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody
from litestar.types import HTTPScope

from ecard.kit.edge import SIGNED_PROBLEMS, signed_by
from ecard.kit.infra import unavailable_code
from ecard.kit.metrics import VERIFICATIONS, VERIFY_SECONDS
from ecard.kit.principal import ClientKind, Principal
from ecard.kit.problems import problems
from ecard.kit.raw import RawAnswer, signed_principal
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

PATH = "/v1/verifications"
_CHECKERS = frozenset({ClientKind.MERCHANT, ClientKind.TERMINAL})


async def _check(principal: Principal, data: VerificationRequest, deps: VerifyDeps) -> VerificationAnswer:
    """One verification, metered by its result."""
    check_place(data.place)
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


class VerificationController(Controller):
    path = PATH
    tags = ["verification"]  # noqa: RUF012
    dependencies = {"principal": signed_by(*_CHECKERS, defer_nonce=True)}  # noqa: RUF012

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
        return await _check(principal, data, request.app.state.verify_deps)


_REQUEST = msgspec.json.Decoder(VerificationRequest)
_ANSWER = msgspec.json.Encoder()


async def raw_verification(scope: HTTPScope, body: bytes) -> RawAnswer | None:
    """The controller's `create` as a raw route (ecard/kit/raw.py); a body that does not decode goes on to it."""
    try:
        data = _REQUEST.decode(body)
    except (msgspec.DecodeError, RecursionError):
        return None
    principal = await signed_principal(scope, body, _CHECKERS, defer_nonce=True)
    return RawAnswer(200, _ANSWER.encode(await _check(principal, data, scope["app"].state.verify_deps)))


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
