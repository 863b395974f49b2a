"""Verification of dynamic codes at merchants and terminals."""

from ecard.verify.http import VerificationController
from ecard.verify.service import VerifyDeps

__all__ = ["VerificationController", "VerifyDeps"]
