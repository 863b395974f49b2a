"""Cardholders, cards, enrolled devices."""

from ecard.cards.models import mask_name
from ecard.cards.service import REGIONS, CardHolder, Cards, CardSignals, CardState, Payee, TicketPolicy, Tickets

__all__ = [
    "REGIONS",
    "CardHolder",
    "CardSignals",
    "CardState",
    "Cards",
    "Payee",
    "TicketPolicy",
    "Tickets",
    "mask_name",
]
