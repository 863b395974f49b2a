"""POST /v1/verifications: a merchant or terminal checks a code for one catalog item; the holder's history.

The check itself is served by `VerificationRoute`, a raw ASGI route in front of Litestar (the hot path: Litestar's
routing, dependency injection and response machinery were a sixth of a verification's CPU, load/PROFILE.md). The
controller stays: it documents the route in the OpenAPI document and answers every request the raw route hands on
(a body that is not a well-formed request, or too large), so that those get Litestar's own refusals."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.datastructures import Headers
from litestar.di import NamedDependency
from litestar.enums import ScopeType
from litestar.params import FromPath, JSONBody
from litestar.types import (
    ASGIApp,
    HTTPRequestEvent,
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    Receive,
    ReceiveMessage,
    Scope,
    Send,
)

from ecard.kit.edge import SIGNED_PROBLEMS, SignedRequests, signed_by, target
from ecard.kit.infra import unavailable_code
from ecard.kit.metrics import VERIFICATIONS, VERIFY_SECONDS
from ecard.kit.principal import ClientKind, Principal
from ecard.kit.problems import internal_error_handler, problems, refusal_handler
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
_CHECKERS = (ClientKind.MERCHANT, ClientKind.TERMINAL)


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
_JSON = (b"content-type", b"application/json")


class VerificationRoute:
    """`POST /v1/verifications` ahead of Litestar's router; everything else goes on to `app` untouched.

    It reads the body (up to `max_body`), and when it decodes as a `VerificationRequest` it does what the
    controller does: the signature check of `signed_by`, then `_check`. Refusals and failures are rendered by the
    app's own handlers (`refusal_handler`, `internal_error_handler`), so their answers are the controller's byte
    for byte. A body that does not decode, or is too large, is handed to Litestar as received, and gets Litestar's
    refusal (400 `invalid_request` naming the field, 413)."""

    def __init__(self, app: ASGIApp, max_body: int) -> None:
        self._app = app
        self._max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or scope["path"] != PATH or scope["method"] != "POST":
            await self._app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away before its request was whole: nobody to answer
            chunk = message.get("body", b"")
            chunks.append(chunk)
            size += len(chunk)
            if size > self._max_body:
                await self._app(scope, _replay(chunks, receive, more_body=True), send)
                return
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        try:
            data = _REQUEST.decode(body)
        except (msgspec.DecodeError, RecursionError):
            await self._app(scope, _replay([body], receive, more_body=False), send)
            return
        scope["path_template"] = PATH
        try:
            state = scope["app"].state
            authenticator: SignedRequests = state.authenticator
            path, query = target(scope)
            principal = await authenticator.authenticate(
                "POST", path, query, Headers.from_scope(scope), body, frozenset(_CHECKERS), defer_nonce=True
            )
            payload = _ANSWER.encode(await _check(principal, data, state.verify_deps))
        except Exception as exc:  # rendered exactly as the app's exception handlers render it
            await _problem(scope, receive, send, exc)
            return
        start: HTTPResponseStartEvent = {
            "type": "http.response.start",
            "status": 200,
            "headers": [_JSON, (b"content-length", b"%d" % len(payload))],
        }
        await send(start)
        whole: HTTPResponseBodyEvent = {"type": "http.response.body", "body": payload, "more_body": False}
        await send(whole)


def _replay(chunks: list[bytes], receive: Receive, *, more_body: bool) -> Callable[[], Awaitable[ReceiveMessage]]:
    """`receive` for the app behind: the body read so far, then whatever the client still sends."""
    body = b"".join(chunks)
    sent = False

    async def replayed() -> ReceiveMessage:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        first: HTTPRequestEvent = {"type": "http.request", "body": body, "more_body": more_body}
        return first

    return replayed


async def _problem(scope: Scope, receive: Receive, send: Send, exc: Exception) -> None:
    request: Request[Any, Any, Any] = Request(scope, receive)
    response = refusal_handler(request, exc) if isinstance(exc, Refusal) else internal_error_handler(request, exc)
    await response.to_asgi_response(app=None, request=request)(scope, receive, send)


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
