"""HTTP for federation: the trust list (operators), this issuer's request keys, and partners' verifications."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from ecard.federation.models import FederatedVerificationRequest, NewPartner, PartnerAnswer, PartnerList
from ecard.federation.service import Federation
from ecard.kit.edge import SIGNED_PROBLEMS, operator_session, signed_by
from ecard.kit.principal import ClientKind, Principal
from ecard.kit.problems import problems
from ecard.kit.refusal import Refusal
from ecard.verify import (
    REFUSALS,
    Venue,
    VerificationAnswer,
    VerifyDeps,
    accepted,
    check_place,
    verify_for_partner,
)


def _federation(request: Request[Any, Any, Any]) -> Federation:
    federation: Federation = request.app.state.federation
    return federation


class PartnerAdminController(Controller):
    path = "/v1/admin/partners"
    tags = ["federation"]  # noqa: RUF012
    dependencies = {"operator": operator_session}  # noqa: RUF012

    @post(
        "/",
        status_code=201,
        summary="Register a partner issuer (its request-signing key and where it answers)",
        responses=problems("unauthorized", "invalid_request", "partner_exists"),
    )
    async def register(
        self, request: Request[Any, Any, Any], operator: NamedDependency[str], data: JSONBody[NewPartner]
    ) -> PartnerAnswer:
        return await _federation(request).register(
            operator, data.issuer, data.name, data.base_url, data.public_key, data.region
        )

    @get("/", summary="The trust list: partners, their code keys and when those were fetched")
    async def list_partners(
        self,
        request: Request[Any, Any, Any],
        operator: NamedDependency[str],  # noqa: ARG002 - its presence is the operator guard
    ) -> PartnerList:
        return PartnerList(items=await _federation(request).list())

    @post(
        "/{issuer:str}/refresh",
        status_code=200,
        summary="Fetch a partner's published code keys now",
        responses=problems("unauthorized", "not_found", "issuer_unavailable"),
    )
    async def refresh(
        self,
        request: Request[Any, Any, Any],
        operator: NamedDependency[str],  # noqa: ARG002
        issuer: FromPath[str],
    ) -> PartnerAnswer:
        federation = _federation(request)
        await federation.refresh_keys(issuer)
        return next(p for p in await federation.list() if p.issuer == issuer)


class IssuerRequestKeyController(Controller):
    path = "/v1/issuer/request-keys"
    tags = ["federation"]  # noqa: RUF012

    @get("/", summary="The keys this issuer signs its own requests with (JWK set; keyid on the wire: issuer:kid)")
    async def keys(self, request: Request[Any, Any, Any]) -> dict[str, Any]:
        published: dict[str, Any] = request.app.state.request_key.jwks()
        return published


class FederationController(Controller):
    path = "/v1/federation/verifications"
    tags = ["federation"]  # noqa: RUF012
    dependencies = {"principal": signed_by(ClientKind.PARTNER, defer_nonce=True)}  # noqa: RUF012

    @post(
        "/",
        status_code=200,
        summary="A partner issuer asks this issuer to decide on one of its codes",
        responses=problems(*SIGNED_PROBLEMS, *REFUSALS),
    )
    async def verify(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        data: JSONBody[FederatedVerificationRequest],
    ) -> VerificationAnswer:
        check_place(data.place)
        deps: VerifyDeps = request.app.state.verify_deps
        if data.answer_by is not None and deps.clock.now() > data.answer_by:
            raise Refusal("issuer_unavailable", "the asking issuer has stopped waiting; nothing was decided")
        partner = await _federation(request).partner_by_id(principal.owner_id)
        if partner is None or partner.status != "active":
            raise Refusal("client_disabled", "this partner is not on the trust list")
        venue = Venue(
            merchant_id=f"{partner.issuer}:{data.merchant.id}",
            merchant_name=data.merchant.name,
            region=data.merchant.region,
            terminal_id=data.terminal_id,
            place=data.place,
            via_issuer=partner.issuer,
        )
        return accepted(
            await verify_for_partner(principal.nonce, data.code, data.item_code, venue, partner.region, deps)
        )
