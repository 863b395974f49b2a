"""The plan's level rules (说明 五), checked directly where the marks are exact."""

from __future__ import annotations

from datetime import date

import pytest

from ecard.catalog import Item
from ecard.depth.service import measure, on_track, share_level
from ecard.depth.store import PayoutRow


@pytest.mark.parametrize(
    ("part", "whole", "level"),
    [
        (0, 0, 0),
        (0, 10, 0),
        (49, 100, 0),
        (1, 2, 1),
        (50, 100, 1),
        (69, 100, 1),
        (7, 10, 2),
        (70, 100, 2),
        (899, 1000, 2),
        (9, 10, 3),
        (90, 100, 3),
        (10, 10, 3),
        # 以上 includes the mark: 700 of 1000 is as good as 7 of 10, whatever floats make of it
        (700_000_007, 1_000_000_010, 2),
    ],
)
def test_levels_start_at_50_70_and_90_percent(part: int, whole: int, level: int) -> None:
    assert share_level(part, whole) == level


@pytest.mark.parametrize(
    ("levels", "target", "expected"),
    [
        ({"identity": 2}, 3, False),
        ({"identity": 3}, 3, True),
        ({"identity": 1}, None, None),
        ({"identity": 3, "payment": 1}, 3, False),
        # payment has two levels: a target of 3 asks it for its highest, 2
        ({"identity": 3, "payment": 2}, 3, True),
        ({"payment": 2}, 3, True),
        ({"disbursement": 1, "payment": 1}, 1, True),
    ],
)
def test_on_track_asks_each_function_for_the_target_or_its_highest_level(
    levels: dict[str, int], target: int | None, expected: bool | None
) -> None:
    assert on_track(levels, target) is expected


def _item(functions: tuple[str, ...], targets: dict[str, int]) -> Item:
    return Item(
        item_code="wl-900",
        name="测试事项",
        domain="culture_tourism",
        lead_department="区文化旅游委",
        functions=functions,
        card_modes=("physical", "electronic"),
        regions=("cq",),
        discloses=("pseudonym",),
        effective_from=date(2025, 1, 1),
        depth_targets=targets,
    )


def test_a_district_accepts_no_more_scenes_than_it_has() -> None:
    item = _item(("identity",), {"2026_end": 2})

    depth = measure(item, 2026, {"wulong": 2, "cq": 8}, {"wulong": 5, "cq": 3, "sc": 4}, None, payment_merchant=False)

    # wulong counts 2 of its 2 scenes, cq 3 of 8; sc has no recorded scenes and does not count
    assert depth.scenes.total == 10
    assert depth.accepting_scenes.total == 5
    assert depth.accepting_scenes.by_district == {"cq": 3, "sc": 4, "wulong": 5}
    assert depth.share == 0.5
    assert depth.levels == {"identity": 1}
    assert (depth.level, depth.target, depth.on_track) == (1, 2, False)


def test_an_item_is_as_deep_as_its_shallowest_function() -> None:
    item = _item(("identity", "disbursement", "payment"), {"2026_end": 1})

    depth = measure(item, 2026, {"wulong": 10}, {"wulong": 9}, PayoutRow("wl-000", 2026, 10, 7), payment_merchant=True)

    assert depth.levels == {"identity": 3, "disbursement": 2, "payment": 1}
    assert (depth.level, depth.on_track) == (1, True)
    assert depth.note is not None
    assert "payment level 2" in depth.note


def test_nothing_recorded_is_level_0_and_says_why() -> None:
    item = _item(("identity", "disbursement"), {})

    depth = measure(item, 2026, {}, {"wulong": 3}, None, payment_merchant=False)

    assert depth.scenes.total is None
    assert depth.share is None
    assert depth.beneficiaries is None
    assert depth.levels == {"identity": 0, "disbursement": 0}
    assert (depth.level, depth.target, depth.on_track) == (0, None, None)
    assert depth.note == "no scenes recorded; no beneficiaries recorded for 2026"
