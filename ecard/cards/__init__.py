"""Cardholders, cards, enrolled devices."""

from ecard.cards.models import mask_name
from ecard.cards.service import REGIONS, CardHolder, Cards, CardState

__all__ = ["REGIONS", "CardHolder", "CardState", "Cards", "mask_name"]
