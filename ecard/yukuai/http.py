"""HTTP for the holder's 渝快码 link: consent given and withdrawn from the app."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, delete, put
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from ecard.kit.edge import SIGNED_PROBLEMS, signed_by
from ecard.kit.principal import ClientKind, Principal
from ecard.kit.problems import problems
from ecard.kit.refusal import Refusal
from ecard.yukuai.models import LinkAnswer, LinkRequest
from ecard.yukuai.service import YukuaiLinks


def _links(request: Request[Any, Any, Any]) -> YukuaiLinks:
    links: YukuaiLinks | None = request.app.state.yukuai
    if links is None:
        raise Refusal("issuer_unavailable", "no 渝快办 platform is configured (ECARD_YUKUAI_URL)")
    return links


class YukuaiLinkController(Controller):
    path = "/v1/cards/{card_id:str}/links/yukuai"
    tags = ["federation"]  # noqa: RUF012
    dependencies = {"device": signed_by(ClientKind.DEVICE)}  # noqa: RUF012

    @put(
        "/",
        status_code=200,
        summary="Link the card to a 渝快办 account, with the holder's consent",
        responses=problems(
            *SIGNED_PROBLEMS,
            "forbidden",
            "consent_required",
            "account_not_found",
            "link_exists",
            "card_suspended",
            "card_cancelled",
            "issuer_unavailable",
        ),
    )
    async def link(
        self,
        request: Request[Any, Any, Any],
        device: NamedDependency[Principal],
        card_id: FromPath[str],
        data: JSONBody[LinkRequest],
    ) -> LinkAnswer:
        return await _links(request).link(device, card_id, data.account_id, data.consent)

    @delete(
        "/",
        status_code=200,
        summary="Withdraw consent: the 渝快办 account no longer stands for the card",
        responses=problems(*SIGNED_PROBLEMS, "forbidden", "not_found"),
    )
    async def unlink(
        self, request: Request[Any, Any, Any], device: NamedDependency[Principal], card_id: FromPath[str]
    ) -> LinkAnswer:
        return await _links(request).unlink(device, card_id)
