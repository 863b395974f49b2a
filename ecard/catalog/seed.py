"""The Wulong 2025 plan's catalog (a copy of shared/catalog/wulong-2025.csv) and the reading of catalog CSV files."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from ecard.catalog import models

CATALOG_CSV = Path(__file__).resolve().parent / "data" / "wulong-2025.csv"

COLUMNS = (
    "item_code",
    "seq",
    "kind",
    "lead_department",
    "cooperating_units",
    "service_item",
    "description",
    "card_modes",
    "functions",
    "depth_2025_start",
    "depth_2025_end",
    "depth_2026_end",
    "depth_2027_end",
    "plan_note",
    "discloses",
)
# An empty cell, or no such column, keeps what the item has (for a new item: `new_item_defaults`).
OPTIONAL_COLUMNS = ("regions", "effective_from", "effective_to")

# The plan's words, and the service's own codes so that a file can use either.
FUNCTIONS = {"身份识别": "identity", "资金发放": "disbursement", "缴费支付": "payment"} | {
    f: f for f in models.FUNCTIONS
}
MODES = {"实体卡": "physical", "电子卡": "electronic"} | {m: m for m in models.CARD_MODES}
LEVELS = {"一级": 1, "二级": 2, "三级": 3, "1": 1, "2": 2, "3": 3}
DOMAINS = {
    "区人力社保局": "social_insurance",
    "区发展改革委": "government_services",
    "区教委": "education",
    "区公安局": "public_security",
    "区民政局": "civil_affairs",
    "区司法局": "justice",
    "区财政局": "finance",
    "区交通运输委": "transport",
    "区文化旅游委": "culture_tourism",
    "区卫生健康委": "health",
    "区医保局": "health",
    "区残联": "civil_affairs",
    "区税务局": "finance",
    "区住房城乡建委": "government_services",
    "人行涪陵分行": "finance",
}
# Identity uses in transport, culture and tourism that Sichuan and Chongqing recognise jointly.
JOINT_ITEMS = {"wl-013", "wl-029", "wl-030", "wl-031", "wl-032"}
PLAN_START = date(2025, 1, 1)
# Where a problem with an item's field shows in a file: the column it was read from.
COLUMN_OF = {"name": "service_item", "domain": "lead_department", "depth_targets": "depth_2027_end"}

_SEPARATORS = re.compile(r"[、，,]")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True)
class CsvProblem:
    line: int
    column: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.column}: {self.message}"


@dataclass(frozen=True)
class CsvRow:
    """One card use read from a file: the item fields its cells gave, and the columns that could not be read."""

    line: int
    item_code: str
    values: dict[str, Any]
    bad_columns: frozenset[str]


@dataclass
class ParsedCsv:
    rows: list[CsvRow] = field(default_factory=list)
    problems: list[CsvProblem] = field(default_factory=list)


def new_item_defaults(item_code: str) -> dict[str, Any]:
    """What a new item has where a file says nothing: the plan's start, and the joint list for the joint items."""
    return {
        "regions": ["cq", "sc"] if item_code in JOINT_ITEMS else ["cq"],
        "effective_from": PLAN_START,
        "effective_to": None,
        "depth_targets": {},
        "description": "",
    }


def _split(value: str) -> list[str]:
    return [part.strip() for part in _SEPARATORS.split(value) if part.strip()]


def _mapped(value: str, mapping: dict[str, str], what: str) -> tuple[list[str], str | None]:
    parts = _split(value)
    unknown = [p for p in parts if p not in mapping]
    if unknown:
        known = "、".join(k for k in mapping if not k.isascii())
        return [], f"unknown {what} {', '.join(map(repr, unknown))} (one of {known})"
    return [mapping[p] for p in parts], None


def _date(value: str) -> date | None:
    if not _DATE.fullmatch(value):
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


def _header(cells: list[str]) -> tuple[list[str], list[CsvProblem]]:
    names = [c.strip().lstrip("\ufeff") for c in cells]
    problems = [CsvProblem(1, c, "missing column") for c in COLUMNS if c not in names]
    seen: set[str] = set()
    for name in names:
        if name in seen:
            problems.append(CsvProblem(1, name, "the column appears twice"))
        elif name not in COLUMNS and name not in OPTIONAL_COLUMNS:
            # a misspelt optional column would otherwise be ignored without a word
            problems.append(CsvProblem(1, name or "(empty)", "unknown column"))
        seen.add(name)
    return names, problems


def _row(line: int, cell: dict[str, str]) -> tuple[dict[str, Any], list[CsvProblem]]:
    """The item fields the cells of a service row give; each cell that cannot be read is a problem."""
    problems: list[CsvProblem] = []
    lead = cell["lead_department"].strip()
    values: dict[str, Any] = {
        "name": cell["service_item"].strip(),
        "lead_department": lead,
        "domain": DOMAINS.get(lead, "government_services"),
        "description": cell["description"].strip(),
        "discloses": _split(cell["discloses"]),
    }
    for column, mapping, what in (("functions", FUNCTIONS, "function"), ("card_modes", MODES, "card mode")):
        parsed, wrong = _mapped(cell[column], mapping, what)
        if wrong:
            problems.append(CsvProblem(line, column, wrong))
        else:
            values[column] = parsed
    targets: dict[str, int] = {}
    for key in models.DEPTH_KEYS:
        level = cell[f"depth_{key}"].strip()
        if level in LEVELS:
            targets[key] = LEVELS[level]
        elif level:
            problems.append(CsvProblem(line, f"depth_{key}", f"unknown level {level!r} (一级, 二级 or 三级)"))
    values["depth_targets"] = targets
    if regions := cell.get("regions", "").strip():
        values["regions"] = _split(regions)
    for column in ("effective_from", "effective_to"):
        if text := cell.get(column, "").strip():
            day = _date(text)
            if day is None:
                problems.append(CsvProblem(line, column, f"{text!r} is not a date (YYYY-MM-DD)"))
            else:
                values[column] = day
    return values, problems


def parse_catalog(text: str) -> ParsedCsv:
    """The card uses of a catalog CSV (the columns of wulong-2025.csv), with every cell that cannot be read.

    Line numbers are the file's own (the header is line 1); `support` rows (plan work, not card uses) are left out.
    """
    parsed = ParsedCsv()
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if header is None:
            parsed.problems.append(CsvProblem(1, "item_code", "the file is empty"))
            return parsed
        names, parsed.problems = _header(header)
        if any(p.message == "missing column" for p in parsed.problems):
            return parsed
        first_line_of: dict[str, int] = {}
        end = reader.line_num
        for cells in reader:
            line, end = end + 1, reader.line_num
            if not any(c.strip() for c in cells):
                continue
            if len(cells) != len(names):
                column = names[len(cells)] if len(cells) < len(names) else "(extra cell)"
                message = f"the row has {len(cells)} cells, the header {len(names)}"
                parsed.problems.append(CsvProblem(line, column, message))
                continue
            cell = dict(zip(names, cells, strict=True))
            kind = cell["kind"].strip()
            if kind == "support":
                continue
            if kind != "service":
                parsed.problems.append(CsvProblem(line, "kind", f"{kind!r} is neither service nor support"))
                continue
            code = cell["item_code"].strip()
            if code in first_line_of:
                parsed.problems.append(CsvProblem(line, "item_code", f"{code} is on line {first_line_of[code]} too"))
                continue
            first_line_of[code] = line
            values, problems = _row(line, cell)
            parsed.problems.extend(problems)
            parsed.rows.append(CsvRow(line, code, values, frozenset(p.column for p in problems)))
    except csv.Error as exc:
        parsed.problems.append(CsvProblem(reader.line_num, "(file)", f"not readable as CSV: {exc}"))
    return parsed


def catalog_rows(path: Path = CATALOG_CSV) -> list[dict[str, Any]]:
    """The shipped plan's card uses, each with every field of an item, ready to seed."""
    parsed = parse_catalog(path.read_text(encoding="utf-8-sig"))
    if parsed.problems:
        raise ValueError(f"{path.name}: " + "; ".join(map(str, parsed.problems)))
    return [{**new_item_defaults(r.item_code), **r.values, "item_code": r.item_code} for r in parsed.rows]
