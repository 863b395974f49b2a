"""HTTP for cardholders (operators), enrolment and PIN resets (channels) and the holder's own card (devices)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from ecard.cards.models import (
    CardholderAnswer,
    CardholderCards,
    Enrolment,
    EnrolmentAnswer,
    IdLookup,
    NewCardholder,
    Notices,
    PinChange,
    PinResetGrant,
    PinResetRequest,
    ReportedLost,
    StatusAnswer,
    StatusChange,
    TicketAnswer,
    TicketedEnrolment,
    TicketRequest,
)
from ecard.cards.service import Cards, Tickets
from ecard.kit.edge import SIGNED_PROBLEMS, operator_session, signed_by
from ecard.kit.principal import ClientKind, Principal
from ecard.kit.problems import problems
from ecard.operators import source_of

ADMIN = {"operator": operator_session}


class CardholderAdminController(Controller):
    path = "/v1/admin"
    tags = ["operators"]  # noqa: RUF012
    dependencies = ADMIN

    @post(
        "/cardholders",
        status_code=201,
        summary="Register a card from the card registry",
        responses=problems("unauthorized", "invalid_request", "card_serial_taken"),
    )
    async def register(
        self, cards: NamedDependency[Cards], operator: NamedDependency[str], data: JSONBody[NewCardholder]
    ) -> CardholderAnswer:
        return await cards.register(operator, data.name, data.id_number, data.region, data.card_serial)

    @post(
        "/cardholders/search",
        status_code=200,
        summary="Find a cardholder's cards by ID number (sent in the body, never in a URL)",
        responses=problems("unauthorized", "cardholder_not_found"),
    )
    async def search(
        self, cards: NamedDependency[Cards], operator: NamedDependency[str], data: JSONBody[IdLookup]
    ) -> CardholderCards:
        return await cards.find(operator, data.id_number)

    @post(
        "/cards/{card_id:str}/status",
        status_code=200,
        summary="Change a card's status",
        responses=problems("unauthorized", "card_not_found", "card_status_conflict", "invalid_request"),
    )
    async def set_status(
        self,
        cards: NamedDependency[Cards],
        operator: NamedDependency[str],
        card_id: FromPath[str],
        data: JSONBody[StatusChange],
    ) -> StatusAnswer:
        status = await cards.set_status(operator, card_id, data.status, data.reason)
        return StatusAnswer(card_id=card_id, status=status)


class EnrolmentController(Controller):
    path = "/v1/enrolments"
    tags = ["channels"]  # noqa: RUF012
    dependencies = {"principal": signed_by(ClientKind.CHANNEL)}  # noqa: RUF012

    @post(
        "/",
        status_code=201,
        summary="Enrol a device after the channel's real-name check",
        responses=problems(*SIGNED_PROBLEMS, "forbidden", "cardholder_not_found", "identity_mismatch"),
    )
    async def enrol(
        self, cards: NamedDependency[Cards], principal: NamedDependency[Principal], data: JSONBody[Enrolment]
    ) -> EnrolmentAnswer:
        return await cards.enrol(principal, data.id_number, data.name, data.device_public_key, data.device_name)

    @post(
        "/tickets",
        status_code=201,
        summary="A single-use, 5-minute ticket that opens the citizen pages (H5) for the person the channel checked",
        description=(
            "The person is matched exactly as by POST /v1/enrolments. `h5_url` carries the ticket in its fragment"
            " (`/h5/#ticket=...`), which browsers never send to a server; the page enrols its own key with it."
        ),
        responses=problems(*SIGNED_PROBLEMS, "forbidden", "cardholder_not_found", "identity_mismatch"),
    )
    async def ticket(
        self, tickets: NamedDependency[Tickets], principal: NamedDependency[Principal], data: JSONBody[TicketRequest]
    ) -> TicketAnswer:
        return await tickets.issue(principal, data.id_number, data.name)


class TicketedEnrolmentController(Controller):
    path = "/v1/enrolments/ticketed"
    tags = ["channels"]  # noqa: RUF012

    @post(
        "/",
        status_code=201,
        summary="Enrol the citizen page's own key with a channel's ticket (no signature: the ticket is the credential)",
        description=(
            "Answers as POST /v1/enrolments, and like it retires the card's older devices. A used, unknown or"
            " expired ticket is 401 `ticket_invalid`, all alike; tries are limited per source address (429)."
        ),
        responses=problems("invalid_request", "ticket_invalid", "cardholder_not_found", "too_many_requests"),
    )
    async def redeem(
        self, request: Request[Any, Any, Any], tickets: NamedDependency[Tickets], data: JSONBody[TicketedEnrolment]
    ) -> EnrolmentAnswer:
        source = source_of(request.client.host if request.client else None)
        return await tickets.redeem(data.ticket, data.device_public_key, data.device_name, source)


class PinResetController(Controller):
    path = "/v1/devices"
    tags = ["channels"]  # noqa: RUF012
    dependencies = {"principal": signed_by(ClientKind.CHANNEL)}  # noqa: RUF012

    @post(
        "/{device_id:str}/pin-reset",
        status_code=201,
        summary="Let the device set a new PIN without the old one, after the channel's fresh real-name check",
        description=(
            "Answers a single-use grant, valid for ECARD_PIN_RESET_TTL_S seconds, that the device sends as"
            " `reset_token` with its new PIN to PUT /v1/devices/{device_id}/pin."
        ),
        responses=problems(
            *SIGNED_PROBLEMS, "forbidden", "not_found", "identity_mismatch", "card_suspended", "card_cancelled"
        ),
    )
    async def grant(
        self,
        cards: NamedDependency[Cards],
        principal: NamedDependency[Principal],
        device_id: FromPath[str],
        data: JSONBody[PinResetRequest],
    ) -> PinResetGrant:
        return await cards.grant_pin_reset(principal, device_id, data.id_number, data.name)


class DeviceController(Controller):
    path = "/v1"
    tags = ["devices"]  # noqa: RUF012
    dependencies = {"principal": signed_by(ClientKind.DEVICE)}  # noqa: RUF012

    @put(
        "/devices/{device_id:str}/pin",
        status_code=204,
        summary="Set the device's payment PIN",
        description=(
            '`{"pin"}` sets the first PIN. A PIN already set changes with `current_pin` (counted by the same'
            " lockout as payments) or with `reset_token`, a channel's grant from POST .../pin-reset."
        ),
        responses=problems(
            *SIGNED_PROBLEMS,
            "forbidden",
            "pin_incorrect",
            "pin_locked",
            "pin_reset_invalid",
            "card_suspended",
            "card_cancelled",
        ),
    )
    async def set_pin(
        self,
        cards: NamedDependency[Cards],
        principal: NamedDependency[Principal],
        device_id: FromPath[str],
        data: JSONBody[PinChange],
    ) -> None:
        await cards.set_pin(principal, device_id, data.pin, data.current_pin, data.reset_token)

    @post(
        "/cards/{card_id:str}/report-lost",
        status_code=200,
        summary="Report the card lost (挂失): suspends it at once",
        responses=problems(*SIGNED_PROBLEMS, "forbidden", "card_status_conflict"),
    )
    async def report_lost(
        self, cards: NamedDependency[Cards], principal: NamedDependency[Principal], card_id: FromPath[str]
    ) -> ReportedLost:
        return ReportedLost(status=await cards.report_lost(principal, card_id))

    @get(
        "/cards/{card_id:str}/notices",
        summary="What the holder has been told about the card (PIN set, changed or reset, ...), newest first",
        responses=problems(*SIGNED_PROBLEMS, "forbidden"),
    )
    async def notices(
        self, cards: NamedDependency[Cards], principal: NamedDependency[Principal], card_id: FromPath[str]
    ) -> Notices:
        return Notices(items=await cards.notices(principal, card_id))
