"""A merchant's functions decide which catalog items it may be entitled to."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support import World, ed25519_actor, problem


def registration(items: list[str], **extra: Any) -> dict[str, Any]:
    return {"name": "武隆区自来水公司", "region": "wulong", "items": items, "public_key": ed25519_actor().jwk, **extra}


async def merchant_count(world: World) -> int:
    count: int = await world.app.state.pool.fetchval("SELECT count(*) FROM merchants")
    return count


async def test_a_payment_merchant_cannot_be_entitled_to_an_identity_item(world: World) -> None:
    answer = await world.admin("POST", "/v1/admin/merchants", registration(["wl-008", "wl-030"], functions=["payment"]))

    assert problem(answer) == (409, "entitlement_mismatch")
    assert answer.json()["items"] == ["wl-030"]
    assert "wl-030" in answer.json()["detail"]
    assert await merchant_count(world) == 0
    assert await world.app.state.pool.fetchval("SELECT count(*) FROM client_keys") == 0


@pytest.mark.parametrize(
    ("items", "functions"),
    [
        (["wl-043"], ["payment"]),
        (["wl-022"], ["disbursement"]),
        (["wl-030", "wl-043"], ["identity", "payment"]),
        (["wl-001"], ["disbursement", "identity", "payment"]),
        ([], ["identity"]),
    ],
)
async def test_a_merchant_registered_without_functions_takes_those_of_its_items(
    world: World, items: list[str], functions: list[str]
) -> None:
    # API.md's request names no functions: it must register a merchant for any items
    answer = await world.admin("POST", "/v1/admin/merchants", registration(items))

    assert answer.status_code == 201, answer.text
    assert answer.json()["functions"] == functions
    assert answer.json()["items"] == sorted(items)
    read = await world.admin("GET", f"/v1/admin/merchants/{answer.json()['merchant_id']}")
    assert read.json()["functions"] == functions
    rows = await world.app.state.pool.fetch("SELECT detail FROM audit_log WHERE action = 'merchant.registered'")
    assert [r["detail"] for r in rows] == [{"items": sorted(items), "functions": functions}]


async def test_explicit_functions_are_still_checked_against_the_items(world: World) -> None:
    refused = await world.admin("POST", "/v1/admin/merchants", registration(["wl-043"], functions=["identity"]))

    assert problem(refused) == (409, "entitlement_mismatch")
    assert refused.json()["items"] == ["wl-043"]
    assert await merchant_count(world) == 0


async def test_items_that_share_a_function_with_the_merchant_are_accepted(world: World) -> None:
    # wl-006 is identity and payment: it fits a merchant that does either
    answer = await world.admin(
        "POST",
        "/v1/admin/merchants",
        registration(["wl-030", "wl-008", "wl-006", "wl-030"], functions=["payment", "identity"]),
    )

    assert answer.status_code == 201, answer.text
    assert answer.json()["items"] == ["wl-006", "wl-008", "wl-030"]
    assert answer.json()["functions"] == ["identity", "payment"]
    read = await world.admin("GET", f"/v1/admin/merchants/{answer.json()['merchant_id']}")
    assert read.json()["functions"] == ["identity", "payment"]
    assert read.json()["items"] == ["wl-006", "wl-008", "wl-030"]


@pytest.mark.parametrize("functions", [[], ["banking"], "payment"])
async def test_functions_must_be_a_non_empty_list_of_known_functions(world: World, functions: Any) -> None:
    answer = await world.admin("POST", "/v1/admin/merchants", registration(["wl-030"], functions=functions))

    assert problem(answer) == (400, "invalid_request")
    assert [f.split("[")[0] for f in answer.json()["fields"]] == ["functions"]
    assert await merchant_count(world) == 0


async def test_an_unknown_item_is_refused_before_any_mismatch(world: World) -> None:
    answer = await world.admin("POST", "/v1/admin/merchants", registration(["wl-999", "wl-030"], functions=["payment"]))

    assert problem(answer) == (404, "item_unknown")


async def test_changing_entitlements_keeps_to_the_merchants_functions(world: World) -> None:
    library = await world.merchant(["wl-030"])
    path = f"/v1/admin/merchants/{library.ids['merchant_id']}/items"

    refused = await world.admin("PUT", path, {"items": ["wl-031", "wl-028"]})

    assert problem(refused) == (409, "entitlement_mismatch")
    assert refused.json()["items"] == ["wl-028"]
    read = await world.admin("GET", f"/v1/admin/merchants/{library.ids['merchant_id']}")
    assert read.json()["items"] == ["wl-030"]
    assert read.json()["functions"] == ["identity"]


async def test_functions_and_items_can_change_together(world: World) -> None:
    library = await world.merchant(["wl-030"])
    path = f"/v1/admin/merchants/{library.ids['merchant_id']}/items"

    changed = await world.admin("PUT", path, {"items": ["wl-030", "wl-028"], "functions": ["identity", "payment"]})
    narrowed = await world.admin("PUT", path, {"items": ["wl-030"], "functions": ["payment"]})

    assert changed.status_code == 200, changed.text
    assert changed.json() == {
        "merchant_id": library.ids["merchant_id"],
        "functions": ["identity", "payment"],
        "items": ["wl-028", "wl-030"],
    }
    # functions that no longer fit the items are refused with them, and nothing changes
    assert problem(narrowed) == (409, "entitlement_mismatch")
    read = await world.admin("GET", f"/v1/admin/merchants/{library.ids['merchant_id']}")
    assert read.json()["functions"] == ["identity", "payment"]
    assert read.json()["items"] == ["wl-028", "wl-030"]


async def test_entitlement_changes_are_audited_and_refusals_are_not(world: World) -> None:
    library = await world.merchant(["wl-030"])
    path = f"/v1/admin/merchants/{library.ids['merchant_id']}/items"
    await world.admin("PUT", path, {"items": ["wl-028"]})
    await world.admin("PUT", path, {"items": ["wl-031", "wl-028"], "functions": ["identity", "payment"]})

    rows = await world.app.state.pool.fetch(
        "SELECT action, subject, detail FROM audit_log WHERE action LIKE 'merchant.%' ORDER BY entry_id"
    )

    assert [(r["action"], r["subject"]) for r in rows] == [
        ("merchant.registered", library.ids["merchant_id"]),
        ("merchant.entitlements", library.ids["merchant_id"]),
    ]
    assert rows[0]["detail"] == {"items": ["wl-030"], "functions": ["identity"]}
    assert rows[1]["detail"] == {"items": ["wl-028", "wl-031"], "functions": ["identity", "payment"]}
    assert await world.audit_intact()


async def test_a_merchant_verifies_the_items_it_fits(world: World) -> None:
    water = await world.merchant(["wl-006"], functions=["payment"], name="武隆区自来水公司")
    device = await world.device()

    answer = await world.verify(water, await world.code(device), "wl-006")

    assert answer.status_code == 200, answer.text
