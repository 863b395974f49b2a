"""`ecard catalog import`: a CSV applied as one version, or, if any row is wrong, nothing and every bad line named."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from ecard.catalog import Catalog
from ecard.catalog.seed import CATALOG_CSV
from ecard.kit.refusal import Refusal
from tests.catalog.support import versions
from tests.support import World, ecard_cli

SHIPPED = CATALOG_CSV.read_text(encoding="utf-8")


def edited(changes: dict[str, dict[str, str]], extra_columns: tuple[str, ...] = (), text: str = SHIPPED) -> str:
    """The shipped CSV with some cells changed (by item code), optionally with more columns."""
    rows = list(csv.DictReader(io.StringIO(text)))
    out = io.StringIO()
    assert rows
    writer = csv.DictWriter(out, fieldnames=[*rows[0].keys(), *extra_columns], lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({**dict.fromkeys(extra_columns, ""), **row, **changes.get(row["item_code"], {})})
    return out.getvalue()


def catalog(world: World) -> Catalog:
    found: Catalog = world.app.state.catalog
    return found


async def snapshot(world: World) -> list[dict[str, object]]:
    items: list[dict[str, object]] = (await world.client.get("/v1/catalog/items?at=2025-06-01")).json()["items"]
    return items


async def test_reimporting_the_shipped_plan_changes_nothing(world: World) -> None:
    imported = await catalog(world).import_csv("wulong-2025.csv", SHIPPED)

    assert (imported.version, imported.items) == (1, 0)
    assert len(await versions(world)) == 1


async def test_a_good_import_is_one_new_version_by_the_file(world: World) -> None:
    text = edited(
        {
            "wl-030": {"discloses": "pseudonym", "regions": "cq"},
            "wl-031": {"depth_2027_end": "二级", "effective_to": "2027-12-31"},
        },
        extra_columns=("regions", "effective_from", "effective_to"),
    )
    text += (
        "wl-048,48,service,区文化旅游委,区人力社保局,景区年卡,持卡入园。,电子卡,身份识别,,,一级,二级,,"
        "pseudonym,cq,2026-01-01,\n"
    )

    imported = await catalog(world).import_csv("wulong-2026.csv", text)

    assert (imported.version, imported.items) == (2, 3)
    newest = (await versions(world))[0]
    assert newest["actor"] == "import:wulong-2026.csv"
    changes = {c["item_code"]: c["fields"] for c in newest["changes"]}
    assert changes["wl-030"] == {
        "discloses": {"old": ["pseudonym", "name_masked"], "new": ["pseudonym"]},
        "regions": {"old": ["cq", "sc"], "new": ["cq"]},
    }
    assert changes["wl-031"] == {
        "depth_targets": {
            "old": {"2025_end": 3, "2025_start": 2, "2026_end": 3, "2027_end": 3},
            "new": {"2025_end": 3, "2025_start": 2, "2026_end": 3, "2027_end": 2},
        },
        "effective_to": {"old": None, "new": "2027-12-31"},
    }
    assert changes["wl-048"]["effective_from"] == {"old": None, "new": "2026-01-01"}
    park = (await world.client.get("/v1/catalog/items/wl-048")).json()
    assert park["functions"] == ["identity"]
    assert park["card_modes"] == ["electronic"]
    assert park["domain"] == "culture_tourism"
    assert park["depth_targets"] == {"2026_end": 1, "2027_end": 2}


async def test_cells_left_empty_keep_the_items_regions_and_dates(world: World) -> None:
    text = edited({"wl-030": {"service_item": "图书借阅"}}, extra_columns=("regions", "effective_from"))

    imported = await catalog(world).import_csv("names.csv", text)

    assert imported.items == 1
    library = (await world.client.get("/v1/catalog/items/wl-030")).json()
    assert library["name"] == "图书借阅"
    assert library["regions"] == ["cq", "sc"]
    assert library["effective_from"] == "2025-01-01"


async def test_every_bad_line_is_named_and_nothing_is_applied(world: World) -> None:
    before = await snapshot(world)
    text = edited(
        {
            "wl-002": {"functions": "身份识别、发工资"},  # line 3
            "wl-005": {"card_modes": ""},  # line 6
            "wl-010": {"discloses": "pseudonym,phone", "depth_2026_end": "四级"},  # line 11
            "wl-020": {"effective_from": "2025/01/01"},  # line 21
            "wl-030": {"service_item": "图书借阅"},  # a good change, not applied either
            "wl-031": {"effective_from": "2026-01-01", "effective_to": "2025-01-01"},  # line 32
            "wl-046": {"kind": "plan"},  # line 47
        },
        extra_columns=("effective_from", "effective_to"),
    )
    text += "wl 049,49,service,区教委,,新事项,,电子卡,身份识别,,,,,,pseudonym,,\n"  # line 49
    text += "wl-001,50,service,区教委,,重复,,电子卡,身份识别,,,,,,pseudonym,,\n"  # line 50

    with pytest.raises(Refusal) as refused:
        await catalog(world).import_csv("bad.csv", text)

    errors = refused.value.extra["errors"]
    assert [e.split(":")[0] for e in errors] == [
        "line 3",
        "line 6",
        "line 11",
        "line 11",
        "line 21",
        "line 32",
        "line 47",
        "line 49",
        "line 50",
    ]
    assert errors[0].startswith("line 3: functions: ")
    assert "发工资" in errors[0]
    assert errors[1].startswith("line 6: card_modes: ")
    assert {e.split(": ")[1] for e in errors[2:4]} == {"discloses", "depth_2026_end"}
    assert errors[4].startswith("line 21: effective_from: ")
    assert errors[5].startswith("line 32: effective_to: ")
    assert errors[6].startswith("line 47: kind: ")
    assert errors[7].startswith("line 49: item_code: ")
    assert errors[8] == "line 50: item_code: wl-001 is on line 2 too"
    assert await snapshot(world) == before
    assert len(await versions(world)) == 1


async def test_a_file_without_the_plans_columns_is_refused_at_its_header(world: World) -> None:
    text = "item_code,kind,service_item,region\nwl-001,service,x,cq\n"

    with pytest.raises(Refusal) as refused:
        await catalog(world).import_csv("short.csv", text)

    errors = refused.value.extra["errors"]
    assert "line 1: lead_department: missing column" in errors
    assert "line 1: region: unknown column" in errors
    assert all(e.startswith("line 1: ") for e in errors)


async def test_a_row_with_too_few_cells_is_named(world: World) -> None:
    text = SHIPPED + "wl-060,60,service,区教委\n"

    with pytest.raises(Refusal) as refused:
        await catalog(world).import_csv("ragged.csv", text)

    assert refused.value.extra["errors"] == ["line 49: cooperating_units: the row has 4 cells, the header 15"]


async def test_the_command_imports_a_file_as_one_version(world: World, tmp_path: Path) -> None:
    path = tmp_path / "wulong-2025-q3.csv"
    path.write_text(edited({"wl-030": {"discloses": "pseudonym"}, "wl-031": {"discloses": "pseudonym"}}))

    run = await ecard_cli(world, "catalog", "import", str(path))

    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == {"version": 2, "items": 2}
    newest = (await versions(world))[0]
    assert newest["actor"] == "import:wulong-2025-q3.csv"
    assert [c["item_code"] for c in newest["changes"]] == ["wl-030", "wl-031"]
    catalog(world).invalidate()  # another process changed it: this worker would see it within a second
    assert (await world.client.get("/v1/catalog/items/wl-030")).json()["discloses"] == ["pseudonym"]


async def test_the_command_prints_every_bad_line_exits_2_and_applies_nothing(world: World, tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(
        edited(
            {
                "wl-003": {"card_modes": "纸质卡"},
                "wl-030": {"discloses": "pseudonym"},
                "wl-040": {"discloses": "everything"},
            }
        )
    )

    run = await ecard_cli(world, "catalog", "import", str(path))

    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert lines[0].startswith("line 4: card_modes: ")
    assert lines[1].startswith("line 41: discloses: ")
    assert json.loads(lines[-1])["error"] == "invalid_request"
    assert run.stdout == ""
    assert len(await versions(world)) == 1
    catalog(world).invalidate()
    assert (await world.client.get("/v1/catalog/items/wl-030")).json()["discloses"] == ["pseudonym", "name_masked"]
