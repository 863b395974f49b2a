"""Risk events as operators see them, what the rules observe, and the rules' thresholds."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

Severity = Literal["low", "medium", "high"]
Outcome = Literal["confirmed", "false_positive"]
EventStatus = Literal["open", "resolved"]
NoteText = Annotated[str, msgspec.Meta(max_length=500)]

# The severity of each kind's events unless the raiser says otherwise; a kind not listed is medium.
SEVERITY: dict[str, Severity] = {
    "code_replay": "medium",
    "velocity": "medium",
    "impossible_travel": "high",
    "pin_guessing": "medium",
    "enrolment_churn": "medium",
    "merchant_harvest": "high",
    "audit_chain_broken": "high",
}


@dataclass(frozen=True)
class RiskSettings:
    """The rules' windows and thresholds (docs/risk.md), from ecard.config.Settings."""

    velocity_window_s: int = 600
    velocity_max: int = 20
    travel_kmh: float = 300.0
    travel_min_km: float = 5.0
    pin_lockouts: int = 3
    pin_window_s: int = 86_400
    churn_window_s: int = 7 * 86_400
    churn_max: int = 3
    harvest_window_s: int = 900
    harvest_cards: int = 20
    act_on: frozenset[str] = field(default_factory=lambda: frozenset({"impossible_travel", "pin_guessing"}))
    prefix: str = "ecard:"
    # how long the rules wait, after an observation, for others to join its batch (they run off the answer's path)
    batch_s: float = 0.05


@dataclass(frozen=True)
class Verified:
    """An accepted verification, as the rules see it: the place only when it is a terminal's registered one."""

    card_id: str
    merchant_id: str
    item_code: str
    discloses_identity: bool
    lat: float | None
    lon: float | None
    at: float


@dataclass(frozen=True)
class PinLocked:
    card_id: str
    at: float


@dataclass(frozen=True)
class DeviceEnrolled:
    card_id: str
    at: float


Observation = Verified | PinLocked | DeviceEnrolled


class EventRow(msgspec.Struct, frozen=True):
    public_id: str
    kind: str
    severity: str
    card_id: str | None
    merchant_id: str | None
    detail: dict[str, Any]
    raised_at: datetime
    status: str
    action: str
    outcome: str | None
    note: str | None
    resolved_by: str | None
    resolved_at: datetime | None


class RiskEvent(msgspec.Struct):
    event_id: str
    kind: str
    severity: str
    card_id: str | None
    merchant_id: str | None
    detail: dict[str, Any]
    raised_at: str
    status: str
    action: str
    outcome: str | None = None
    note: str | None = None
    resolved_at: str | None = None


class RiskEventList(msgspec.Struct):
    items: list[RiskEvent]


class Resolution(msgspec.Struct, forbid_unknown_fields=True):
    outcome: Outcome
    note: NoteText = ""
