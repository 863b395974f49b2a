"""Verification of dynamic codes at merchants and terminals, ours and partner issuers'."""

from ecard.verify.models import (
    REFUSALS,
    ShortText,
    TerminalId,
    Text,
    Venue,
    Verification,
    VerificationAnswer,
    accepted,
    check_place,
)
from ecard.verify.service import (
    Forwarder,
    LinkedCodes,
    VerifyDeps,
    timeline,
    verify_for_partner,
    verify_offline_tap,
)
from ecard.verify.store import verification_records

__all__ = [
    "REFUSALS",
    "Forwarder",
    "LinkedCodes",
    "ShortText",
    "TerminalId",
    "Text",
    "Venue",
    "Verification",
    "VerificationAnswer",
    "VerifyDeps",
    "accepted",
    "check_place",
    "timeline",
    "verification_records",
    "verify_for_partner",
    "verify_offline_tap",
]
