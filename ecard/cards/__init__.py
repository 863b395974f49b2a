"""Cardholders, cards, enrolled devices."""

from ecard.cards.http import CardholderAdminController, DeviceController, EnrolmentController
from ecard.cards.models import mask_name
from ecard.cards.service import Cards, CardState

__all__ = [
    "CardState",
    "CardholderAdminController",
    "Cards",
    "DeviceController",
    "EnrolmentController",
    "mask_name",
]
