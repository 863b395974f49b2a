"""Raw ASGI routes for the hot paths, served ahead of Litestar's router.

Litestar's routing, dependency injection and response machinery were a sixth of a verification's CPU
(load/PROFILE.md). A raw route reads the body itself and hands the room's handler the scope and the bytes. The
handler answers, raises (a `Refusal`, or a failure), or declines with None before doing anything, and the
request then goes on to Litestar exactly as the client sent it: the route's controller stays, documents the
route in the OpenAPI document, and refuses what the raw handler does not take (a body that does not decode,
another form of answer). Refusals and failures are rendered by the app's own exception handlers, so their
answers are the controller's byte for byte."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from litestar import Request
from litestar.datastructures import Headers
from litestar.enums import ScopeType
from litestar.types import (
    ASGIApp,
    HTTPRequestEvent,
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    HTTPScope,
    Receive,
    ReceiveMessage,
    Scope,
    Send,
)

from ecard.kit.edge import SignedRequests, target
from ecard.kit.principal import ClientKind, Principal
from ecard.kit.problems import internal_error_handler, refusal_handler
from ecard.kit.refusal import Refusal

_JSON = (b"content-type", b"application/json")


@dataclass(frozen=True)
class RawAnswer:
    """A JSON answer: its status, its encoded body and any headers beside Content-Type and Content-Length."""

    status: int
    payload: bytes
    headers: tuple[tuple[bytes, bytes], ...] = ()


# The scope and the whole body in; the answer, or None to hand the request on to Litestar untouched.
RawHandler = Callable[[HTTPScope, bytes], Awaitable[RawAnswer | None]]


async def signed_principal(
    scope: HTTPScope, body: bytes, kinds: frozenset[ClientKind], *, defer_nonce: bool = False
) -> Principal:
    """Who signed the request, checked as `edge.signed_by` checks it."""
    authenticator: SignedRequests = scope["app"].state.authenticator
    path, query = target(scope)
    return await authenticator.authenticate(
        scope["method"], path, query, Headers.from_scope(scope), body, kinds, defer_nonce=defer_nonce
    )


def header(scope: HTTPScope, name: str) -> str:
    """A request header as Litestar's `request.headers.get` reads it ("" when absent)."""
    return Headers.from_scope(scope).get(name, "")


class RawRoutes:
    """The routes in `routes` (by method and exact path) ahead of `app`; every other request goes on untouched."""

    def __init__(self, app: ASGIApp, routes: Mapping[tuple[str, str], RawHandler], max_body: int) -> None:
        self._app = app
        self._routes = dict(routes)
        self._max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self._app(scope, receive, send)
            return
        handler = self._routes.get((scope["method"], scope["path"]))
        if handler is None:
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
            if size > self._max_body:  # Litestar refuses it (413) as it refuses any other
                await self._app(scope, _replay(b"".join(chunks), receive, more_body=True), send)
                return
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        scope["path_template"] = scope["path"]
        try:
            answer = await handler(scope, body)
        except Exception as exc:  # rendered exactly as the app's exception handlers render it
            await _problem(scope, receive, send, exc)
            return
        if answer is None:
            await self._app(scope, _replay(body, receive, more_body=False), send)
            return
        start: HTTPResponseStartEvent = {
            "type": "http.response.start",
            "status": answer.status,
            "headers": [_JSON, (b"content-length", b"%d" % len(answer.payload)), *answer.headers],
        }
        await send(start)
        whole: HTTPResponseBodyEvent = {"type": "http.response.body", "body": answer.payload, "more_body": False}
        await send(whole)


def _replay(body: bytes, receive: Receive, *, more_body: bool) -> Callable[[], Awaitable[ReceiveMessage]]:
    """`receive` for the app behind: the body read so far, then whatever the client still sends."""
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
