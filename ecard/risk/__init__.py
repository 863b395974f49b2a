"""Risk monitoring: events other rooms raise, the rules that watch verifications, PINs and enrolments, and the
in-service audit check."""

from ecard.risk.models import Resolution, RiskSettings, Verified
from ecard.risk.service import AuditWatch, RiskEvents, RiskInbox

__all__ = ["AuditWatch", "Resolution", "RiskEvents", "RiskInbox", "RiskSettings", "Verified"]
