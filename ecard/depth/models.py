"""What operators record about depth of use, and the report that measures it."""

from __future__ import annotations

from datetime import date
from typing import Annotated

import msgspec

# District and region codes as merchants' places write them: wulong, cq, ...
District = Annotated[str, msgspec.Meta(min_length=1, max_length=32, pattern=r"^[a-z][a-z0-9_-]*$")]
Count = Annotated[int, msgspec.Meta(ge=0, le=1_000_000_000)]
Year = Annotated[int, msgspec.Meta(ge=2000, le=2100)]


class SceneCount(msgspec.Struct, forbid_unknown_fields=True):
    district: District
    scenes: Count


class SceneAnswer(msgspec.Struct):
    item_code: str
    district: str
    scenes: int


class Beneficiaries(msgspec.Struct, forbid_unknown_fields=True):
    year: Year
    beneficiaries: Count
    paid_by_card: Count


class Payouts(msgspec.Struct):
    item_code: str
    year: int
    beneficiaries: int
    paid_by_card: int
    share: float | None
    # `batches`: counted from the service's completed disbursement batches of the year (issue 12);
    # `reported_outside_service`: an operator's figures for payouts made outside the service, used only without batches
    source: str = "batches"


class Counts(msgspec.Struct):
    """A total over the districts with recorded scenes (None when there are none), and each district's count."""

    total: int | None
    by_district: dict[str, int]


class ItemDepth(msgspec.Struct):
    item_code: str
    name: str
    functions: list[str]
    scenes: Counts
    accepting_scenes: Counts
    share: float | None
    beneficiaries: Payouts | None
    levels: dict[str, int]
    level: int
    target: int | None
    on_track: bool | None
    note: str | None


class DepthReport(msgspec.Struct):
    date: date
    window_days: int
    items: list[ItemDepth]
