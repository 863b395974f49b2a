"""Cardholders, cards, enrolled devices."""

from ecard.cards.models import mask_name
from ecard.cards.service import CardHolder, Cards, CardState

__all__ = ["CardHolder", "CardState", "Cards", "mask_name"]
