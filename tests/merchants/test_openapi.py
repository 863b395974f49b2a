"""The OpenAPI document publishes the terminal, venue and depth routes with their refusals."""

from __future__ import annotations

from typing import Any

from tests.support import World


def _problem_codes(operation: dict[str, Any], status: int) -> str:
    description: str = operation["responses"][str(status)]["description"]
    return description


async def test_openapi_publishes_terminals_venues_and_depth(world: World) -> None:
    answer = await world.client.get("/schema/openapi.json")
    assert answer.status_code == 200, answer.text
    paths = answer.json()["paths"]

    register = paths["/v1/admin/merchants"]["post"]
    terminals = paths["/v1/admin/merchants/{merchant_id}/terminals"]["post"]
    assert "entitlement_mismatch" in _problem_codes(register, 409)
    assert "terminal_exists" in _problem_codes(terminals, 409)
    assert "post" in paths["/v1/admin/merchants/{merchant_id}/terminals/{terminal_id}/status"]
    assert "item_unknown" in _problem_codes(paths["/v1/venues"]["get"], 404)
    assert "put" in paths["/v1/admin/depth/scenes/{item_code}"]
    assert "put" in paths["/v1/admin/depth/beneficiaries/{item_code}"]
    report = paths["/v1/admin/depth"]["get"]
    assert "text/csv" in report["responses"]["200"]["description"]
    assert "$ref" in str(report["responses"]["200"]["content"])
    assert any(p["name"] == "date" for p in report["parameters"])
