"""The edge of signed requests: a Litestar dependency that yields the authenticated principal."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.di import Provide

from ecard.clients.models import ClientKind, Principal
from ecard.clients.service import Authenticator

SIGNED_PROBLEMS = (
    "signature_missing",
    "signature_invalid",
    "signature_expired",
    "nonce_reused",
    "unknown_client",
    "client_disabled",
    "invalid_request",
)


def signed_by(*kinds: ClientKind, defer_nonce: bool = False) -> Provide:
    """Dependency for a route that only the given kinds of client may call.

    `defer_nonce` is for the hot path: the route claims `principal.nonce` in its own Redis round trip.
    """
    allowed = frozenset(kinds)

    async def principal(request: Request[Any, Any, Any]) -> Principal:
        auth: Authenticator = request.app.state.authenticator
        body = await request.body()
        raw_path = request.scope.get("raw_path")
        path = raw_path.decode("latin-1") if isinstance(raw_path, bytes) else request.url.path
        query = request.scope.get("query_string", b"").decode("latin-1")
        return await auth.authenticate(
            request.method, path, query, request.headers, body, allowed, defer_nonce=defer_nonce
        )

    return Provide(principal)
