"""HTTP for cardholders (operators), enrolment (channels) and the holder's own card (devices)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from ecard.cards.models import (
    CardholderAnswer,
    CardholderCards,
    Enrolment,
    EnrolmentAnswer,
    IdLookup,
    NewCardholder,
    PinChange,
    StatusAnswer,
    StatusChange,
)
from ecard.cards.service import Cards
from ecard.kit.edge import SIGNED_PROBLEMS, operator_session, signed_by
from ecard.kit.principal import ClientKind, Principal
from ecard.kit.problems import problems

ADMIN = {"operator": operator_session}


def _cards(request: Request[Any, Any, Any]) -> Cards:
    cards: Cards = request.app.state.cards
    return cards


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
        self, request: Request[Any, Any, Any], operator: NamedDependency[str], data: JSONBody[NewCardholder]
    ) -> CardholderAnswer:
        return await _cards(request).register(operator, data.name, data.id_number, data.region, data.card_serial)

    @post(
        "/cardholders/search",
        status_code=200,
        summary="Find a cardholder's cards by ID number (sent in the body, never in a URL)",
        responses=problems("unauthorized", "cardholder_not_found"),
    )
    async def search(
        self, request: Request[Any, Any, Any], operator: NamedDependency[str], data: JSONBody[IdLookup]
    ) -> CardholderCards:
        return await _cards(request).find(operator, data.id_number)

    @post(
        "/cards/{card_id:str}/status",
        status_code=200,
        summary="Change a card's status",
        responses=problems("unauthorized", "card_not_found", "card_status_conflict", "invalid_request"),
    )
    async def set_status(
        self,
        request: Request[Any, Any, Any],
        operator: NamedDependency[str],
        card_id: FromPath[str],
        data: JSONBody[StatusChange],
    ) -> StatusAnswer:
        status = await _cards(request).set_status(operator, card_id, data.status, data.reason)
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
        self, request: Request[Any, Any, Any], principal: NamedDependency[Principal], data: JSONBody[Enrolment]
    ) -> EnrolmentAnswer:
        return await _cards(request).enrol(
            principal, data.id_number, data.name, data.device_public_key, data.device_name
        )


class DeviceController(Controller):
    path = "/v1"
    tags = ["devices"]  # noqa: RUF012
    dependencies = {"principal": signed_by(ClientKind.DEVICE)}  # noqa: RUF012

    @put(
        "/devices/{device_id:str}/pin",
        status_code=204,
        summary="Set the device's payment PIN",
        responses=problems(*SIGNED_PROBLEMS, "forbidden"),
    )
    async def set_pin(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        device_id: FromPath[str],
        data: JSONBody[PinChange],
    ) -> None:
        await _cards(request).set_pin(principal, device_id, data.pin)

    @post(
        "/cards/{card_id:str}/report-lost",
        status_code=200,
        summary="Report the card lost (挂失): suspends it at once",
        responses=problems(*SIGNED_PROBLEMS, "forbidden", "card_status_conflict"),
    )
    async def report_lost(
        self, request: Request[Any, Any, Any], principal: NamedDependency[Principal], card_id: FromPath[str]
    ) -> dict[str, str]:
        return {"status": await _cards(request).report_lost(principal, card_id)}
