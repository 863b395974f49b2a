"""Operators of the card management agency and their sessions."""

from ecard.operators.http import SessionController, operator_session
from ecard.operators.service import Operators

__all__ = ["Operators", "SessionController", "operator_session"]
