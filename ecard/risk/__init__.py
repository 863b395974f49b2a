"""Risk events: replays now; velocity, impossible travel and PIN guessing to come."""

from ecard.risk.service import RiskEvents

__all__ = ["RiskEvents"]
