"""Risk events: what other rooms observed, raised for the monitoring desk."""

from ecard.risk.service import RiskEvents

__all__ = ["RiskEvents"]
