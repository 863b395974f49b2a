"""HTTP for the holder's 渝快码 link: consent given and withdrawn from the app."""

from __future__ import annotations

from litestar import Controller, delete, put
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from ecard.kit.edge import SIGNED_PROBLEMS, signed_by
from ecard.kit.principal import ClientKind, Principal
from ecard.kit.problems import problems
from ecard.yukuai.models import LinkAnswer, LinkRequest
from ecard.yukuai.service import YukuaiLinks


class YukuaiLinkController(Controller):
    path = "/v1/cards/{card_id:str}/links/yukuai"
    tags = ["federation"]  # noqa: RUF012
    dependencies = {"device": signed_by(ClientKind.DEVICE)}  # noqa: RUF012

    @put(
        "/",
        status_code=200,
        summary="Link the card to a 渝快办 account, with the holder's consent and the platform's link token",
        description="`link_token` is what the 渝快办 app gives its logged-in user for this account (one use, "
        "minutes long); the account's real name at the platform must be the card holder's.",
        responses=problems(
            *SIGNED_PROBLEMS,
            "forbidden",
            "consent_required",
            "link_token_required",
            "link_token_invalid",
            "identity_mismatch",
            "link_exists",
            "card_suspended",
            "card_cancelled",
            "issuer_unavailable",
        ),
    )
    async def link(
        self,
        yukuai: NamedDependency[YukuaiLinks],
        device: NamedDependency[Principal],
        card_id: FromPath[str],
        data: JSONBody[LinkRequest],
    ) -> LinkAnswer:
        return await yukuai.link(device, card_id, data.account_id, data.consent, data.link_token)

    @delete(
        "/",
        status_code=200,
        summary="Withdraw consent: the 渝快办 account no longer stands for the card",
        responses=problems(*SIGNED_PROBLEMS, "forbidden", "not_found"),
    )
    async def unlink(
        self, yukuai: NamedDependency[YukuaiLinks], device: NamedDependency[Principal], card_id: FromPath[str]
    ) -> LinkAnswer:
        return await yukuai.unlink(device, card_id)
