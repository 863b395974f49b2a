"""Operator sessions over HTTP, and the guard every admin route stands behind."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, post
from litestar.params import JSONBody

from ecard.kit.problems import problems
from ecard.operators.models import SessionAnswer, SessionRequest
from ecard.operators.service import Operators


class SessionController(Controller):
    path = "/v1/admin/sessions"
    tags = ["operators"]  # noqa: RUF012 - Litestar reads a plain list

    @post(
        "/",
        status_code=201,
        responses=problems("operator_credentials_invalid", "operator_locked", "invalid_request"),
        summary="Log an operator in (password + TOTP)",
    )
    async def create(self, request: Request[Any, Any, Any], data: JSONBody[SessionRequest]) -> SessionAnswer:
        operators: Operators = request.app.state.operators
        session = await operators.login(data.username, data.password, data.totp)
        return SessionAnswer(token=session.token, expires_at=session.expires_at)
