"""What the catalog tests share: an item's fields as an operator would PUT them."""

from __future__ import annotations

from typing import Any

from tests.support import World

PUT_FIELDS = (
    "name",
    "domain",
    "lead_department",
    "functions",
    "card_modes",
    "regions",
    "discloses",
    "effective_from",
    "effective_to",
    "depth_targets",
)


async def fields_of(world: World, item_code: str) -> dict[str, Any]:
    """The item as the public catalog shows it, in the shape of a PUT body."""
    answer = await world.client.get(f"/v1/catalog/items/{item_code}")
    assert answer.status_code == 200, answer.text
    return {k: v for k, v in answer.json().items() if k in PUT_FIELDS}


def new_item(**changes: Any) -> dict[str, Any]:
    return {
        "name": "武隆喀斯特景区年卡",
        "domain": "culture_tourism",
        "lead_department": "区文化旅游委",
        "functions": ["identity"],
        "card_modes": ["electronic"],
        "regions": ["cq"],
        "discloses": ["pseudonym"],
        "effective_from": "2025-01-01",
        **changes,
    }


async def versions(world: World) -> list[dict[str, Any]]:
    answer = await world.client.get("/v1/catalog/versions")
    assert answer.status_code == 200, answer.text
    found: list[dict[str, Any]] = answer.json()["versions"]
    return found
