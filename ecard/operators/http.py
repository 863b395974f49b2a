"""Operator sessions over HTTP: log in, log out (this session, or all of them)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, delete, post
from litestar.di import NamedDependency
from litestar.params import JSONBody

from ecard.kit.edge import operator_session
from ecard.kit.problems import problems
from ecard.kit.refusal import Refusal
from ecard.operators.models import SessionAnswer, SessionRequest
from ecard.operators.service import Operators


def _bearer(request: Request[Any, Any, Any]) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Refusal("unauthorized", "a valid operator session (Authorization: Bearer) is required")
    return token.strip()


class SessionController(Controller):
    path = "/v1/admin/sessions"
    tags = ["operators"]  # noqa: RUF012 - Litestar reads a plain list

    @post(
        "/",
        status_code=201,
        responses=problems(
            "operator_credentials_invalid", "operator_locked", "too_many_requests", "overloaded", "invalid_request"
        ),
        summary="Log an operator in (password + TOTP)",
        description="Attempts are limited per source address and per username (429 with Retry-After); "
        "failures in a row lock the username for that source, and more of them the account (423 with Retry-After).",
    )
    async def create(
        self, request: Request[Any, Any, Any], operators: NamedDependency[Operators], data: JSONBody[SessionRequest]
    ) -> SessionAnswer:
        address = request.client.host if request.client else None
        session = await operators.login(data.username, data.password, data.totp, address)
        return SessionAnswer(token=session.token, expires_at=session.expires_at)

    @delete(
        "/current",
        status_code=204,
        responses=problems("unauthorized"),
        summary="Log out: end the session whose bearer token this request carries",
    )
    async def log_out(self, request: Request[Any, Any, Any], operators: NamedDependency[Operators]) -> None:
        await operators.log_out(_bearer(request))

    @delete(
        "/",
        status_code=204,
        dependencies={"operator": operator_session},
        responses=problems("unauthorized"),
        summary="Log out everywhere: end every session of this operator",
    )
    async def log_out_everywhere(self, operators: NamedDependency[Operators], operator: NamedDependency[str]) -> None:
        await operators.log_out_everywhere(operator)
