"""Merchants, their functions and entitlements, their terminals and places, and channels."""

from ecard.merchants.models import ClientStatus
from ecard.merchants.service import Merchant, Merchants, Terminal

__all__ = ["ClientStatus", "Merchant", "Merchants", "Terminal"]
