"""The Wulong 2025 plan's catalog (a copy of shared/catalog/wulong-2025.csv), as rows to seed."""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path
from typing import Any

CATALOG_CSV = Path(__file__).resolve().parent / "data" / "wulong-2025.csv"

FUNCTIONS = {"身份识别": "identity", "资金发放": "disbursement", "缴费支付": "payment"}
MODES = {"实体卡": "physical", "电子卡": "electronic"}
LEVELS = {"一级": 1, "二级": 2, "三级": 3}
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


def _split(value: str, mapping: dict[str, str]) -> list[str]:
    return [mapping[part] for part in value.replace("，", "、").split("、") if part.strip()]


def catalog_rows(path: Path = CATALOG_CSV) -> list[dict[str, Any]]:
    rows = []
    with path.open(encoding="utf-8") as fh:
        for raw in csv.DictReader(fh):
            if raw["kind"] != "service":
                continue
            targets = {
                key: LEVELS[raw[f"depth_{key}"]]
                for key in ("2025_start", "2025_end", "2026_end", "2027_end")
                if raw[f"depth_{key}"] in LEVELS
            }
            rows.append(
                {
                    "item_code": raw["item_code"],
                    "name": raw["service_item"],
                    "domain": DOMAINS.get(raw["lead_department"], "government_services"),
                    "lead_department": raw["lead_department"],
                    "functions": _split(raw["functions"], FUNCTIONS),
                    "card_modes": _split(raw["card_modes"], MODES),
                    "regions": ["cq", "sc"] if raw["item_code"] in JOINT_ITEMS else ["cq"],
                    "discloses": [d.strip() for d in raw["discloses"].split(",") if d.strip()],
                    "effective_from": PLAN_START,
                    "depth_targets": targets,
                    "description": raw["description"],
                }
            )
    return rows
