"""Cardholders, cards, enrolled devices."""

from ecard.cards.models import mask_name
from ecard.cards.service import Cards, CardState

__all__ = ["CardState", "Cards", "mask_name"]
