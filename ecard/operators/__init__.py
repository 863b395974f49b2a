"""Operators of the card management agency and their sessions."""

from ecard.operators.service import Operators

__all__ = ["Operators"]
