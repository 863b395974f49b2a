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
from ecard.verify.store import GroupCommit

__all__ = [
    "REFUSALS",
    "Forwarder",
    "GroupCommit",
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
    "verify_for_partner",
    "verify_offline_tap",
]
