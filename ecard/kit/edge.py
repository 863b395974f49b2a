"""The HTTP edge every room shares: signed-request and operator-session guards, and typed collaborators.

Routes are handed what they need by name (a typed dependency each, wired once in `app.py`), not by
reading an untyped bag off `app.state`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from litestar import Request
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.params import SkipValidation
from litestar.types import Scope

from ecard.kit.principal import ClientKind, Principal
from ecard.kit.refusal import Refusal

SIGNED_PROBLEMS = (
    "signature_missing",
    "signature_invalid",
    "signature_expired",
    "nonce_reused",
    "unknown_client",
    "client_disabled",
    "invalid_request",
)


class SignedRequests(Protocol):
    """Checks an RFC 9421 signed request and says who signed it (the clients room)."""

    async def authenticate(
        self,
        method: str,
        path: str,
        query: str,
        headers: Mapping[str, str],
        body: bytes,
        kinds: frozenset[ClientKind],
        *,
        defer_nonce: bool = False,
    ) -> Principal: ...


class OperatorSessions(Protocol):
    """Turns an operator's bearer token into the operator's name (the operators room)."""

    async def operator_for(self, token: str) -> str: ...


def provide(name: str) -> Provide:
    """A dependency handing a route the collaborator `app.py` built under `name` in the app's state."""

    def collaborator(state: State) -> Any:
        return state[name]

    return Provide(collaborator, sync_to_thread=False)


def target(scope: Scope) -> tuple[str, str]:
    """The path and query exactly as sent, which the signature covers."""
    raw_path = scope.get("raw_path")
    path = raw_path.decode("latin-1") if isinstance(raw_path, bytes) else scope["path"]
    return path, scope.get("query_string", b"").decode("latin-1")


def signed_by(*kinds: ClientKind, defer_nonce: bool = False) -> Provide:
    """Dependency for a route that only the given kinds of client may call.

    `defer_nonce` is for the hot path: the route claims `principal.nonce` in its own Redis round trip.
    """
    allowed = frozenset(kinds)

    async def principal(
        request: Request[Any, Any, Any], authenticator: NamedDependency[SkipValidation[SignedRequests]]
    ) -> Principal:
        path, query = target(request.scope)
        return await authenticator.authenticate(
            request.method, path, query, request.headers, await request.body(), allowed, defer_nonce=defer_nonce
        )

    return Provide(principal)


async def _operator(
    request: Request[Any, Any, Any],
    operator_sessions: NamedDependency[SkipValidation[OperatorSessions]],
) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Refusal("unauthorized", "a valid operator session (Authorization: Bearer) is required")
    return await operator_sessions.operator_for(token.strip())


operator_session = Provide(_operator)


def signed_or_anonymous(*kinds: ClientKind) -> Provide:
    """Dependency for a route anyone may call: None for a request that carries no signature, else who signed it.

    A request that does carry one (`Signature` or `Signature-Input`) must pass the check of `signed_by`: a bad
    signature is refused, never taken for an anonymous request."""
    allowed = frozenset(kinds)

    async def principal(
        request: Request[Any, Any, Any], authenticator: NamedDependency[SkipValidation[SignedRequests]]
    ) -> Principal | None:
        if "signature" not in request.headers and "signature-input" not in request.headers:
            return None
        path, query = target(request.scope)
        return await authenticator.authenticate(
            request.method, path, query, request.headers, await request.body(), allowed
        )

    return Provide(principal)
