"""Merchants, their functions and entitlements, their terminals and places, and channels."""

from ecard.merchants.service import Merchant, Merchants, Terminal

__all__ = ["Merchant", "Merchants", "Terminal"]
