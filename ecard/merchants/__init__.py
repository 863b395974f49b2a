"""Merchants, their entitlements, and channels."""

from ecard.merchants.http import MerchantAdminController
from ecard.merchants.service import Merchant, Merchants

__all__ = ["Merchant", "MerchantAdminController", "Merchants"]
