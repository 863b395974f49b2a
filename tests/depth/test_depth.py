"""GET /v1/admin/depth: depth of use measured from scenes, beneficiaries and verifications made through the API."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from typing import Any

import pytest

from ecard.kit.clock import to_datetime
from tests.support import Actor, World, problem

DAY = 86_400
# The plan's targets for the items used here, by year end (catalog/wulong-2025.csv).
PLAN = {
    "wl-008": {2025: 1, 2026: 1, 2027: 1},
    "wl-011": {},
    "wl-018": {2025: 2, 2026: 2, 2027: 3},
    "wl-028": {2025: 2, 2026: 2, 2027: 3},
    "wl-030": {2025: 3, 2026: 3, 2027: 3},
}


def today(world: World) -> date:
    return to_datetime(world.clock.now()).date()


def target(item_code: str, day: date) -> int | None:
    return PLAN[item_code].get(day.year)


def on_track(level: int, target: int | None) -> bool | None:
    return None if target is None else level >= target


@contextmanager
def days_ago(world: World, days: int) -> Iterator[None]:
    """Live a while in the past: codes are minted, signed and verified at that time, then the clock comes back."""
    world.clock.advance(-days * DAY)
    try:
        yield
    finally:
        world.clock.advance(days * DAY)


async def accept(world: World, venue: Actor, device: Actor, item_code: str = "wl-030", **extra: Any) -> None:
    answer = await world.verify(venue, await world.code(device), item_code, **extra)
    assert answer.status_code == 200, answer.text


async def scenes(world: World, item_code: str, district: str, count: int) -> None:
    answer = await world.admin("PUT", f"/v1/admin/depth/scenes/{item_code}", {"district": district, "scenes": count})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"item_code": item_code, "district": district, "scenes": count}


async def report(world: World, day: date | None = None) -> dict[str, Any]:
    path = "/v1/admin/depth" + (f"?date={day.isoformat()}" if day else "")
    answer = await world.admin("GET", path)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = answer.json()
    return body


async def depth_of(world: World, item_code: str, day: date | None = None) -> dict[str, Any]:
    items = (await report(world, day))["items"]
    found: dict[str, Any] = next(i for i in items if i["item_code"] == item_code)
    return found


async def library_with_gates(world: World) -> tuple[Actor, dict[str, Actor]]:
    library = await world.merchant(["wl-030"], name="武隆区图书馆")
    gates = {
        "w1": await world.terminal(library, "w1", region="wulong"),
        "w2": await world.terminal(library, "w2", region="wulong"),
        "c1": await world.terminal(library, "c1", region="cq"),
    }
    return library, gates


async def test_identity_depth_counts_the_scenes_that_accepted_the_card_in_30_days(world: World) -> None:
    library, gates = await library_with_gates(world)
    phone = await world.device()
    with days_ago(world, 31):
        await accept(world, gates["c1"], phone)
    await accept(world, gates["w1"], phone)
    await accept(world, gates["w1"], phone)  # one venue, however many verifications
    await accept(world, gates["w2"], phone)
    await accept(world, library, phone)  # the merchant's own key, at none of its terminals: no venue's
    await scenes(world, "wl-030", "wulong", 2)
    await scenes(world, "wl-030", "cq", 2)

    now = await depth_of(world, "wl-030")
    back_then = await depth_of(world, "wl-030", today(world) - timedelta(days=31))

    assert now["scenes"] == {"total": 4, "by_district": {"cq": 2, "wulong": 2}}
    assert now["accepting_scenes"] == {"total": 2, "by_district": {"wulong": 2}}
    assert now["share"] == 0.5
    assert now["levels"] == {"identity": 1}
    assert now["level"] == 1
    assert now["target"] == target("wl-030", today(world))
    assert now["on_track"] is on_track(1, now["target"])
    # a month earlier only the cq gate had accepted the card, and the later ones had not happened yet
    assert back_then["accepting_scenes"] == {"total": 1, "by_district": {"cq": 1}}
    assert back_then["share"] == 0.25
    assert back_then["level"] == 0


async def test_identity_levels_follow_the_scene_share(world: World) -> None:
    _, gates = await library_with_gates(world)
    phone = await world.device()
    for gate in gates.values():
        await accept(world, gate, phone)
    await scenes(world, "wl-030", "wulong", 2)

    steps = []
    for district, count in (("cq", 4), ("cq", 2), ("cq", 1), ("wulong", 5), ("wulong", 8)):
        await scenes(world, "wl-030", district, count)
        depth = await depth_of(world, "wl-030")
        steps.append((depth["accepting_scenes"]["total"], depth["scenes"]["total"], depth["share"], depth["level"]))
        assert depth["on_track"] is on_track(depth["level"], target("wl-030", today(world)))

    assert steps == [
        (3, 6, 0.5, 1),  # 50 %: level 1
        (3, 4, 0.75, 2),  # 75 %: level 2
        (3, 3, 1.0, 3),  # every scene: level 3
        (3, 6, 0.5, 1),  # more wulong scenes than wulong venues
        (3, 9, 0.3333, 0),  # below half
    ]


async def test_a_merchant_without_terminals_is_a_venue_in_its_own_region(world: World) -> None:
    museum = await world.merchant(["wl-030"], name="武隆博物馆", region="wulong")
    phone = await world.device()
    await accept(world, museum, phone, terminal_id="whatever")
    await scenes(world, "wl-030", "wulong", 1)

    depth = await depth_of(world, "wl-030")

    assert depth["accepting_scenes"] == {"total": 1, "by_district": {"wulong": 1}}
    assert depth["level"] == 3


async def test_an_item_without_recorded_scenes_has_no_share(world: World) -> None:
    _, gates = await library_with_gates(world)
    await accept(world, gates["w1"], await world.device())

    depth = await depth_of(world, "wl-030")

    assert depth["scenes"] == {"total": None, "by_district": {}}
    assert depth["accepting_scenes"] == {"total": None, "by_district": {"wulong": 1}}
    assert depth["share"] is None
    assert (depth["level"], depth["on_track"]) == (0, on_track(0, depth["target"]))
    assert depth["note"] == "no scenes recorded"


@pytest.mark.parametrize(("paid", "level"), [(0, 0), (49, 0), (50, 1), (69, 1), (70, 2), (89, 2), (90, 3), (100, 3)])
async def test_disbursement_depth_is_the_share_paid_through_the_card(world: World, paid: int, level: int) -> None:
    year = today(world).year
    path = "/v1/admin/depth/beneficiaries/wl-018"
    answer = await world.admin("PUT", path, {"year": year, "beneficiaries": 100, "paid_by_card": paid})
    # another year's figures are not this year's depth
    await world.admin("PUT", path, {"year": year - 1, "beneficiaries": 10, "paid_by_card": 10 - level})

    depth = await depth_of(world, "wl-018")

    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "item_code": "wl-018",
        "year": year,
        "beneficiaries": 100,
        "paid_by_card": paid,
        "share": paid / 100,
        # an operator's figures count only for payouts made outside the service (issue 12), and say so
        "source": "reported_outside_service",
    }
    assert depth["beneficiaries"] == answer.json()
    assert depth["levels"] == {"disbursement": level}
    assert depth["level"] == level
    assert depth["target"] == target("wl-018", today(world))
    assert depth["on_track"] is on_track(level, depth["target"])


async def test_disbursement_without_figures_for_the_year_is_level_0(world: World) -> None:
    last_year = today(world).year - 1
    await world.admin(
        "PUT", "/v1/admin/depth/beneficiaries/wl-018", {"year": last_year, "beneficiaries": 5, "paid_by_card": 5}
    )

    depth = await depth_of(world, "wl-018")
    then = await depth_of(world, "wl-018", date(last_year, 12, 31))

    assert depth["beneficiaries"] is None
    assert depth["level"] == 0
    assert depth["note"] == f"no beneficiaries recorded for {last_year + 1}"
    assert then["level"] == 3


@pytest.mark.parametrize(
    ("item_code", "body", "status", "field"),
    [
        ("wl-030", {"year": 2026, "beneficiaries": 10, "paid_by_card": 5}, 400, "item_code"),
        ("wl-018", {"year": 2026, "beneficiaries": 10, "paid_by_card": 11}, 400, "paid_by_card"),
        ("wl-018", {"year": 2026, "beneficiaries": -1, "paid_by_card": 0}, 400, "beneficiaries"),
        ("wl-018", {"year": 1999, "beneficiaries": 1, "paid_by_card": 0}, 400, "year"),
        ("wl-999", {"year": 2026, "beneficiaries": 1, "paid_by_card": 0}, 404, None),
    ],
)
async def test_beneficiaries_must_make_sense(
    world: World, item_code: str, body: dict[str, int], status: int, field: str | None
) -> None:
    answer = await world.admin("PUT", f"/v1/admin/depth/beneficiaries/{item_code}", body)

    assert problem(answer)[0] == status
    if field is not None:
        assert answer.json()["fields"] == [field]
    else:
        assert problem(answer) == (404, "item_unknown")
    assert await world.app.state.pool.fetchval("SELECT count(*) FROM depth_beneficiaries") == 0


@pytest.mark.parametrize(
    ("item_code", "body", "status"),
    [
        ("wl-030", {"district": "Wu Long", "scenes": 1}, 400),
        ("wl-030", {"district": "wulong", "scenes": -1}, 400),
        ("wl-030", {"district": "wulong"}, 400),
        ("wl-999", {"district": "wulong", "scenes": 1}, 404),
    ],
)
async def test_scenes_must_make_sense(world: World, item_code: str, body: dict[str, Any], status: int) -> None:
    answer = await world.admin("PUT", f"/v1/admin/depth/scenes/{item_code}", body)

    assert problem(answer)[0] == status
    assert await world.app.state.pool.fetchval("SELECT count(*) FROM depth_scenes") == 0


async def test_payment_level_1_needs_an_active_payment_merchant_and_level_2_paid_bills(world: World) -> None:
    before = await depth_of(world, "wl-008")
    water = await world.merchant(["wl-008", "wl-028"], functions=["payment"], name="武隆区自来水公司")
    await world.merchant(["wl-030"], name="只做身份识别的场馆")
    during = await depth_of(world, "wl-008")
    tuition = await depth_of(world, "wl-028")
    await world.admin("POST", f"/v1/admin/merchants/{water.ids['merchant_id']}/status", {"status": "disabled"})
    after = await depth_of(world, "wl-008")

    assert (before["levels"], during["levels"], after["levels"]) == ({"payment": 0}, {"payment": 1}, {"payment": 0})
    assert during["target"] == target("wl-008", today(world))
    assert during["on_track"] is on_track(1, during["target"])
    assert "payment level 2" in during["note"]
    assert "no bills" in during["note"]
    # wl-028's plan asks for level 2 or more, which needs bills paid with the card
    assert tuition["level"] == 1
    if tuition["target"] is not None:
        assert tuition["on_track"] is False


async def test_an_item_without_a_plan_target_is_neither_on_nor_off_track(world: World) -> None:
    depth = await depth_of(world, "wl-011")

    assert depth["target"] is None
    assert depth["on_track"] is None


async def test_the_report_covers_every_item_in_force(world: World) -> None:
    body = await report(world)
    catalog = await world.app.state.catalog.items()

    assert body["date"] == today(world).isoformat()
    assert body["window_days"] == 30
    assert [i["item_code"] for i in body["items"]] == sorted(i.item_code for i in catalog if i.in_force(today(world)))
    first = body["items"][0]
    assert set(first) == {
        "item_code",
        "name",
        "functions",
        "scenes",
        "accepting_scenes",
        "share",
        "beneficiaries",
        "levels",
        "level",
        "target",
        "on_track",
        "note",
    }


async def test_the_report_as_csv_matches_the_json(world: World) -> None:
    _, gates = await library_with_gates(world)
    phone = await world.device()
    await accept(world, gates["w1"], phone)
    await accept(world, gates["c1"], phone)
    await scenes(world, "wl-030", "wulong", 2)
    await scenes(world, "wl-030", "cq", 1)
    await world.admin(
        "PUT",
        "/v1/admin/depth/beneficiaries/wl-018",
        {"year": today(world).year, "beneficiaries": 8, "paid_by_card": 6},
    )
    await world.merchant(["wl-008"], functions=["payment"])
    token = await world.operator_token()

    answer = await world.client.get(
        "/v1/admin/depth", headers={"Authorization": f"Bearer {token}", "Accept": "text/csv"}
    )
    as_json = (await report(world))["items"]

    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/csv")
    assert "charset=utf-8" in answer.headers["content-type"]
    rows = list(csv.DictReader(io.StringIO(answer.content.decode("utf-8"))))
    assert [r["item_code"] for r in rows] == [i["item_code"] for i in as_json]

    def blank(value: Any) -> str:
        return "" if value is None else str(value)

    for row, item in zip(rows, as_json, strict=True):
        assert row["name"] == item["name"]
        assert row["functions"].split(";") == item["functions"]
        assert row["scenes"] == blank(item["scenes"]["total"])
        assert row["accepting_scenes"] == blank(item["accepting_scenes"]["total"])
        assert row["share"] == blank(item["share"])
        for function in ("identity", "disbursement", "payment"):
            assert row[f"{function}_level"] == blank(item["levels"].get(function))
        assert row["level"] == str(item["level"])
        assert row["target"] == blank(item["target"])
        assert row["on_track"] == {True: "true", False: "false", None: ""}[item["on_track"]]
        assert row["note"] == blank(item["note"])
        paid = item["beneficiaries"] or {}
        assert row["paid_by_card"] == blank(paid.get("paid_by_card"))
    library_row = next(r for r in rows if r["item_code"] == "wl-030")
    assert library_row["scenes_by_district"] == "cq=1;wulong=2"
    assert library_row["accepting_by_district"] == "cq=1;wulong=1"
    assert (library_row["share"], library_row["identity_level"]) == ("0.6667", "1")
    payout_row = next(r for r in rows if r["item_code"] == "wl-018")
    assert (payout_row["beneficiaries"], payout_row["paid_share"], payout_row["level"]) == ("8", "0.75", "2")


FORMULAS = {
    "wl-030": '=HYPERLINK("https://evil.example/","图书馆")',
    "wl-031": "+1+1",
    "wl-032": "-2+3",
    "wl-007": "@SUM(A1:A9)",
    "wl-016": "图书馆=公共服务",
}


async def test_csv_cells_are_quoted_and_text_a_spreadsheet_would_run_is_defused(world: World) -> None:
    for code, name in FORMULAS.items():
        item = (await world.client.get(f"/v1/catalog/items/{code}")).json()
        changed = await world.admin("PUT", f"/v1/admin/catalog/items/{code}", {**item, "name": name})
        assert changed.status_code == 200, changed.text
    token = await world.operator_token()

    answer = await world.client.get(
        "/v1/admin/depth", headers={"Authorization": f"Bearer {token}", "Accept": "text/csv"}
    )

    assert answer.status_code == 200, answer.text
    text = answer.content.decode("utf-8")
    lines = text.split("\r\n")
    assert lines[-1] == ""
    # every cell, header included, is quoted: a quote opens each line and separates each pair of cells
    for line in lines[:-1]:
        cells = next(csv.reader([line]))
        assert line == ",".join(f'"{c}"' for c in (cell.replace('"', '""') for cell in cells)), line
    names = {r["item_code"]: r["name"] for r in csv.DictReader(io.StringIO(text))}
    assert names["wl-030"] == "'" + FORMULAS["wl-030"]
    assert names["wl-031"] == "'+1+1"
    assert names["wl-032"] == "'-2+3"
    assert names["wl-007"] == "'@SUM(A1:A9)"
    # an `=` inside the text is no formula: the cell is left as it is
    assert names["wl-016"] == "图书馆=公共服务"
    assert '"\'=HYPERLINK(""https://evil.example/"",""图书馆"")"' in text


async def test_depth_is_for_operators_and_its_records_are_audited(world: World) -> None:
    anonymous = await world.client.get("/v1/admin/depth")
    await scenes(world, "wl-030", "wulong", 3)
    await world.admin(
        "PUT", "/v1/admin/depth/beneficiaries/wl-018", {"year": 2026, "beneficiaries": 4, "paid_by_card": 1}
    )
    bad_date = await world.admin("GET", "/v1/admin/depth?date=2026-13-01")

    assert problem(anonymous) == (401, "unauthorized")
    assert problem(bad_date) == (400, "invalid_request")
    rows = await world.app.state.pool.fetch(
        "SELECT action, subject, detail FROM audit_log WHERE action LIKE 'depth.%' ORDER BY entry_id"
    )
    assert [(r["action"], r["subject"], r["detail"]) for r in rows] == [
        ("depth.scenes", "wl-030", {"district": "wulong", "scenes": 3}),
        ("depth.beneficiaries", "wl-018", {"year": 2026, "beneficiaries": 4, "paid_by_card": 1}),
    ]
    assert await world.audit_intact()
