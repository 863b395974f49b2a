"""HTTP for federation: the trust list (operators), this issuer's request keys, and partners' verifications."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, MediaType, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, FromQuery, JSONBody

from ecard.federation.models import FederatedVerificationRequest, NewPartner, PartnerAnswer, PartnerList
from ecard.federation.requestkey import TAGS, Audience, IssuerRequestKeys, RequestKeySet
from ecard.federation.service import Federation
from ecard.kit import signing
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
        self, federation: NamedDependency[Federation], operator: NamedDependency[str], data: JSONBody[NewPartner]
    ) -> PartnerAnswer:
        return await federation.register(operator, data.issuer, data.name, data.base_url, data.public_key, data.region)

    @get("/", summary="The trust list: partners, their code keys and when those were fetched")
    async def list_partners(
        self,
        federation: NamedDependency[Federation],
        operator: NamedDependency[str],  # noqa: ARG002 - its presence is the operator guard
    ) -> PartnerList:
        return PartnerList(items=await federation.list())

    @post(
        "/{issuer:str}/refresh",
        status_code=200,
        summary="Fetch a partner's published code keys now",
        responses=problems("unauthorized", "not_found", "issuer_unavailable"),
    )
    async def refresh(
        self,
        federation: NamedDependency[Federation],
        operator: NamedDependency[str],  # noqa: ARG002
        issuer: FromPath[str],
    ) -> PartnerAnswer:
        await federation.refresh_keys(issuer)
        return next(p for p in await federation.list() if p.issuer == issuer)


class IssuerRequestKeyController(Controller):
    path = "/v1/issuer/request-keys"
    tags = ["federation"]  # noqa: RUF012

    @get(
        "/",
        summary="The keys this issuer signs its own requests with, each marked with its audience (keyid: issuer:kid)",
        description="Partner keys come first. `audience` is `federation` (partner issuers), `yukuai` (the 渝快办 "
        "platform), `bank`, or `callback` (merchants' notify_url servers); `?audience=` lists one of them.",
    )
    async def keys(
        self, request_keys: NamedDependency[IssuerRequestKeys], audience: FromQuery[Audience | None] = None
    ) -> RequestKeySet:
        return request_keys.key_set(audience)


class FederationController(Controller):
    path = "/v1/federation/verifications"
    tags = ["federation"]  # noqa: RUF012
    dependencies = {"principal": signed_by(ClientKind.PARTNER, defer_nonce=True)}  # noqa: RUF012

    @post(
        "/",
        status_code=200,
        summary="A partner issuer asks this issuer to decide on one of its codes",
        description='Signed as a request between systems (tag="ecard-federation", `@authority` covered); an '
        "accept is signed back with this issuer's federation key, bound to the request's signature.",
        responses={
            200: ResponseSpec(data_container=VerificationAnswer, description="Accepted (a signed answer)"),
            **problems(*SIGNED_PROBLEMS, *REFUSALS),
        },
    )
    async def verify(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        data: JSONBody[FederatedVerificationRequest],
    ) -> Response[bytes]:
        # Collaborators from the app's state rather than dependencies beside `principal`: Litestar resolves
        # dependencies of one level in an anyio task group, on every request (load/PROFILE.md, 2026-12-07).
        federation: Federation = request.app.state.federation
        verify_deps: VerifyDeps = request.app.state.verify_deps
        request_keys: IssuerRequestKeys = request.app.state.request_keys
        params = signing.parse_signature_params(request.headers, has_body=True)
        # API.md's partner request (no tag, no @authority) stays valid; what a partner does sign must be for us
        signing.require_peer(params, TAGS[Audience.FEDERATION], request.headers, federation.authorities, required=False)
        check_place(data.place)
        if data.answer_by is not None and verify_deps.clock.now() > data.answer_by:
            raise Refusal("answer_window_passed", "the asking issuer has stopped waiting; nothing was decided")
        partner = await federation.partner_by_id(principal.owner_id)
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
        decided = await verify_for_partner(
            principal.nonce, data.code, data.item_code, venue, partner.region, verify_deps
        )
        raw = msgspec.json.encode(accepted(decided))
        signed = request_keys.signer(Audience.FEDERATION).sign_answer(200, raw, request.headers)
        return Response(raw, media_type=MediaType.JSON, headers=signed)
