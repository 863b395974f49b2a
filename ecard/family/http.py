"""HTTP for family links: the guardian's and the member's devices, and the channel that confirms consent."""

from __future__ import annotations

from litestar import Controller, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from ecard.family.models import AddedMember, Consent, Links, LinkView, NewMember
from ecard.family.service import Family
from ecard.kit.edge import SIGNED_PROBLEMS, signed_by
from ecard.kit.principal import ClientKind, Principal
from ecard.kit.problems import problems

DEVICE_REFUSALS = (*SIGNED_PROBLEMS, "forbidden", "card_suspended", "card_cancelled")


class FamilyController(Controller):
    path = "/v1/cards"
    tags = ["family"]  # noqa: RUF012
    dependencies = {"principal": signed_by(ClientKind.DEVICE)}  # noqa: RUF012

    @post(
        "/{card_id:str}/family",
        status_code=201,
        summary="Add a family member who holds a card (the holder's own device)",
        responses=problems(
            *DEVICE_REFUSALS,
            "cardholder_not_found",
            "identity_mismatch",
            "family_limit",
            "family_link_exists",
            "too_many_requests",
        ),
    )
    async def add(
        self,
        family: NamedDependency[Family],
        principal: NamedDependency[Principal],
        card_id: FromPath[str],
        data: JSONBody[NewMember],
    ) -> AddedMember:
        return await family.add(principal, card_id, data.id_number, data.name, data.relation)

    @get(
        "/{card_id:str}/family",
        summary="The family members whose cards this card's holder may show",
        responses=problems(*SIGNED_PROBLEMS, "forbidden"),
    )
    async def members(
        self, family: NamedDependency[Family], principal: NamedDependency[Principal], card_id: FromPath[str]
    ) -> Links:
        return Links(items=await family.members(principal, card_id))

    @get(
        "/{card_id:str}/guardians",
        summary="The family members who may show this card",
        responses=problems(*SIGNED_PROBLEMS, "forbidden"),
    )
    async def guardians(
        self, family: NamedDependency[Family], principal: NamedDependency[Principal], card_id: FromPath[str]
    ) -> Links:
        return Links(items=await family.guardians(principal, card_id))

    @delete(
        "/{card_id:str}/family/{link_id:str}",
        status_code=200,
        summary="End a family link (the guardian's device or the member's own)",
        responses=problems(*SIGNED_PROBLEMS, "forbidden", "not_found"),
    )
    async def end(
        self,
        family: NamedDependency[Family],
        principal: NamedDependency[Principal],
        card_id: FromPath[str],
        link_id: FromPath[str],
    ) -> LinkView:
        return await family.end(principal, card_id, link_id)


class FamilyConsentController(Controller):
    path = "/v1/family"
    tags = ["family"]  # noqa: RUF012
    dependencies = {"principal": signed_by(ClientKind.CHANNEL)}  # noqa: RUF012

    @post(
        "/{link_id:str}/consent",
        status_code=200,
        summary="A channel confirms the member's own real-name check: the link becomes active",
        responses=problems(
            *SIGNED_PROBLEMS, "forbidden", "not_found", "identity_mismatch", "family_consent_not_pending"
        ),
    )
    async def consent(
        self,
        family: NamedDependency[Family],
        principal: NamedDependency[Principal],
        link_id: FromPath[str],
        data: JSONBody[Consent],
    ) -> LinkView:
        return await family.consent(principal, link_id, data.id_number, data.name)
