"""Operators of the card management agency and their sessions."""

from ecard.operators.service import Operators, source_of

__all__ = ["Operators", "source_of"]
