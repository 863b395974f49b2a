"""Cardholders, cards, enrolled devices."""

from ecard.cards.models import StatusChange, mask_name
from ecard.cards.service import REGIONS, CardHolder, Cards, CardSignals, CardState, Payee, TicketPolicy, Tickets

__all__ = [
    "REGIONS",
    "CardHolder",
    "CardSignals",
    "CardState",
    "Cards",
    "Payee",
    "StatusChange",
    "TicketPolicy",
    "Tickets",
    "mask_name",
]
