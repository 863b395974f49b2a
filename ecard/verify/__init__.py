"""Verification of dynamic codes at merchants and terminals, ours and partner issuers'."""

from ecard.verify.http import REFUSALS, VerificationController, accepted, check_place
from ecard.verify.service import Forwarder, LinkedCodes, Venue, Verification, VerifyDeps, verify_for_partner

__all__ = [
    "REFUSALS",
    "Forwarder",
    "LinkedCodes",
    "Venue",
    "Verification",
    "VerificationController",
    "VerifyDeps",
    "accepted",
    "check_place",
    "verify_for_partner",
]
