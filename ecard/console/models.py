"""Values the console's pages are drawn from: the bars of a server-rendered SVG chart."""

from __future__ import annotations

import msgspec


class Bar(msgspec.Struct, frozen=True):
    """One bar, already placed in the chart's coordinates; `target_y` is the marker of the plan's target."""

    label: str
    shown: str
    x: float
    y: float
    width: float
    height: float
    target_y: float | None
    target_shown: str


class Tick(msgspec.Struct, frozen=True):
    y: float
    shown: str


class Chart(msgspec.Struct, frozen=True):
    chart_id: str
    title: str
    width: int
    height: int
    baseline_y: float
    bars: list[Bar]
    ticks: list[Tick]
