"""What operators do: register cardholders and merchants, look people up, change card status, all audited."""

from __future__ import annotations

import random
from typing import Any

import asyncpg
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ecard.kit.crypto import b64u
from tests.support import World, ed25519_actor, id_number, problem


def new_holder(name: str = "张小三", number: str | None = None, **extra: str) -> dict[str, str]:
    return {
        "name": name,
        "id_number": id_number() if number is None else number,
        "region": "cq",
        "card_serial": f"S{random.randint(0, 10**12)}",
        **extra,
    }


async def register(world: World, body: dict[str, Any]) -> Any:
    return await world.admin("POST", "/v1/admin/cardholders", body)


async def search(world: World, number: str) -> Any:
    return await world.admin("POST", "/v1/admin/cardholders/search", {"id_number": number})


async def operator_id(world: World) -> str:
    await world.operator_token()
    found: str = await world.app.state.pool.fetchval("SELECT operator_id FROM operators")
    return found


def wrong_check_digit(number: str) -> str:
    return number[:17] + next(c for c in "0123456789X" if c != number[17])


# --- cardholders ---------------------------------------------------------------------------------


async def test_registering_a_cardholder_gives_an_active_card(world: World) -> None:
    answer = await register(world, new_holder())

    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["card_id"].startswith("crd_")
    assert body["cardholder_id"]
    assert body["status"] == "active"
    assert body["region"] == "cq"


@pytest.mark.parametrize(
    "bad_number",
    [
        pytest.param(wrong_check_digit, id="wrong-check-digit"),
        pytest.param(lambda n: n[:17], id="seventeen-characters"),
        pytest.param(lambda n: n + "1", id="nineteen-characters"),
        pytest.param(lambda n: "A" + n[1:], id="letter-inside"),
        pytest.param(lambda _: "", id="empty"),
    ],
)
async def test_an_invalid_id_number_is_refused_naming_the_field(world: World, bad_number: Any) -> None:
    answer = await register(world, new_holder(number=bad_number(id_number())))

    assert problem(answer) == (400, "invalid_request")
    assert "id_number" in answer.json()["fields"]
    assert await world.app.state.pool.fetchval("SELECT count(*) FROM cardholders") == 0


async def test_an_unknown_region_is_refused_naming_the_field(world: World) -> None:
    answer = await register(world, new_holder(region="xx"))

    assert problem(answer) == (400, "invalid_request")
    assert "region" in answer.json()["fields"]
    assert await world.app.state.pool.fetchval("SELECT count(*) FROM cards") == 0


async def test_an_invalid_request_does_not_echo_the_id_number(world: World) -> None:
    number = wrong_check_digit(id_number())

    answer = await register(world, new_holder(number=number))

    assert problem(answer) == (400, "invalid_request")
    assert number not in answer.text


async def test_a_card_serial_is_registered_once(world: World) -> None:
    first = new_holder()
    assert (await register(world, first)).status_code == 201
    other_person = new_holder("李四", card_serial=first["card_serial"])

    answer = await register(world, other_person)

    assert problem(answer) == (409, "card_serial_taken")
    # the refused registration left no cardholder behind either
    assert problem(await search(world, other_person["id_number"])) == (404, "cardholder_not_found")


async def test_a_second_card_of_the_same_person_joins_the_same_cardholder(world: World) -> None:
    number = id_number()
    first = (await register(world, new_holder(number=number))).json()

    second = await register(world, new_holder(number=number))

    assert second.status_code == 201, second.text
    assert second.json()["cardholder_id"] == first["cardholder_id"]
    assert second.json()["card_id"] != first["card_id"]
    found = (await search(world, number)).json()
    assert {c["card_id"] for c in found["cards"]} == {first["card_id"], second.json()["card_id"]}
    assert await world.app.state.pool.fetchval("SELECT count(*) FROM cardholders") == 1


async def test_names_and_id_numbers_are_encrypted_at_rest(world: World) -> None:
    holder = new_holder("欧阳小明")
    assert (await register(world, holder)).status_code == 201

    rows = await world.app.state.pool.fetch("SELECT * FROM cardholders")

    assert len(rows) == 1
    secrets = [holder["name"].encode(), holder["id_number"].encode(), holder["id_number"][:17].encode()]
    secrets += [s.hex().encode() for s in secrets[:2]]
    for value in dict(rows[0]).values():
        raw = bytes(value) if isinstance(value, bytes | memoryview) else str(value).encode()
        for secret in secrets:
            assert secret not in raw
    # nor does anything else the registration wrote (cards, audit) carry them
    dump = await world.app.state.pool.fetchval(
        "SELECT (SELECT coalesce(string_agg(c::text, '|'), '') FROM cards c)"
        " || (SELECT coalesce(string_agg(a::text, '|'), '') FROM audit_log a)"
    )
    assert holder["name"] not in dump
    assert holder["id_number"] not in dump


async def test_search_by_id_number_shows_the_cards_with_a_masked_name(world: World) -> None:
    holder = new_holder("张小三")
    card = (await register(world, holder)).json()

    answer = await search(world, holder["id_number"])

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["cardholder_id"] == card["cardholder_id"]
    assert body["name_masked"] == "张*三"
    assert [(c["card_id"], c["card_serial"], c["status"]) for c in body["cards"]] == [
        (card["card_id"], holder["card_serial"], "active")
    ]
    assert "张小三" not in answer.text
    assert holder["id_number"] not in answer.text


async def test_searching_an_unknown_id_number_finds_nobody(world: World) -> None:
    await register(world, new_holder())

    answer = await search(world, id_number())

    assert problem(answer) == (404, "cardholder_not_found")


async def test_every_search_is_audited_found_or_not(world: World) -> None:
    holder = new_holder()
    card = (await register(world, holder)).json()
    unknown = id_number()

    await search(world, holder["id_number"])
    await search(world, unknown)

    rows = await world.app.state.pool.fetch(
        "SELECT actor, subject, detail::text AS detail FROM audit_log WHERE action = 'cardholder.searched'"
        " ORDER BY entry_id"
    )
    me = await operator_id(world)
    assert len(rows) == 2
    assert (rows[0]["actor"], rows[0]["subject"]) == (me, card["cardholder_id"])
    assert rows[1]["actor"] == me
    assert rows[1]["subject"] != card["cardholder_id"]
    for row in rows:
        assert holder["id_number"] not in row["detail"]
        assert unknown not in row["detail"] + row["subject"]


# --- card status ---------------------------------------------------------------------------------


async def test_a_card_can_be_suspended_and_reactivated_and_each_change_is_recorded(world: World) -> None:
    device = await world.device()
    card_id = device.ids["card_id"]

    suspended = await world.set_status(card_id, "suspended", "reported by phone")
    assert suspended.status_code == 200, suspended.text
    assert suspended.json()["status"] == "suspended"
    assert problem(await world.signed(device, "POST", "/v1/codes", {})) == (403, "card_suspended")

    reactivated = await world.set_status(card_id, "active", "found again")
    assert reactivated.status_code == 200, reactivated.text
    assert (await world.signed(device, "POST", "/v1/codes", {})).status_code == 201

    rows = await world.app.state.pool.fetch(
        "SELECT status, reason, actor FROM card_status_changes WHERE card_id = $1 ORDER BY change_id", card_id
    )
    me = await operator_id(world)
    assert [(r["status"], r["reason"], r["actor"]) for r in rows] == [
        ("suspended", "reported by phone", me),
        ("active", "found again", me),
    ]
    found = (await search(world, device.ids["id_number"])).json()
    assert found["cards"][0]["status"] == "active"


@pytest.mark.parametrize("then", ["active", "suspended"])
async def test_a_cancelled_card_stays_cancelled(world: World, then: str) -> None:
    device = await world.device()
    card_id = device.ids["card_id"]
    assert (await world.set_status(card_id, "cancelled", "holder died")).status_code == 200

    answer = await world.set_status(card_id, then)

    assert problem(answer) == (409, "card_status_conflict")
    assert problem(await world.signed(device, "POST", "/v1/codes", {})) == (403, "card_cancelled")
    statuses = await world.app.state.pool.fetch(
        "SELECT status FROM card_status_changes WHERE card_id = $1 ORDER BY change_id", card_id
    )
    assert [r["status"] for r in statuses] == ["cancelled"]


async def test_the_status_of_an_unknown_card_cannot_be_changed(world: World) -> None:
    answer = await world.set_status("crd_0000000000000000000000000", "suspended")

    assert problem(answer) == (404, "card_not_found")


async def test_an_unknown_status_value_is_an_invalid_request(world: World) -> None:
    card = (await register(world, new_holder())).json()

    answer = await world.admin("POST", f"/v1/admin/cards/{card['card_id']}/status", {"status": "lost"})

    assert problem(answer) == (400, "invalid_request")
    assert "status" in answer.json()["fields"]
    assert await world.app.state.pool.fetchval("SELECT status FROM cards") == "active"


# --- merchants -----------------------------------------------------------------------------------


async def test_a_merchant_with_an_unknown_item_is_refused(world: World) -> None:
    answer = await world.admin(
        "POST",
        "/v1/admin/merchants",
        {"name": "某图书馆", "region": "cq", "items": ["wl-030", "wl-999"], "public_key": ed25519_actor().jwk},
    )

    assert problem(answer) == (404, "item_unknown")
    assert await world.app.state.pool.fetchval("SELECT count(*) FROM merchants") == 0


def _private_p256_jwk() -> dict[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    numbers = key.private_numbers()
    return {
        "kty": "EC",
        "crv": "P-256",
        "x": b64u(numbers.public_numbers.x.to_bytes(32, "big")),
        "y": b64u(numbers.public_numbers.y.to_bytes(32, "big")),
        "d": b64u(numbers.private_value.to_bytes(32, "big")),
    }


def _rsa_jwk() -> dict[str, str]:
    numbers = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key().public_numbers()
    return {"kty": "RSA", "n": b64u(numbers.n.to_bytes(256, "big")), "e": b64u(numbers.e.to_bytes(3, "big"))}


@pytest.mark.parametrize(
    "public_key",
    [
        pytest.param(_private_p256_jwk(), id="private-p256"),
        pytest.param({**ed25519_actor().jwk, "d": b64u(bytes(32))}, id="private-ed25519"),
        pytest.param(_rsa_jwk(), id="rsa"),
        pytest.param({"kty": "EC", "crv": "P-256", "x": b64u(bytes(32)), "y": b64u(bytes(32))}, id="off-curve"),
        pytest.param({"kty": "OKP", "crv": "Ed25519", "x": "short"}, id="short-ed25519"),
        pytest.param({"kty": "OKP", "crv": "X25519", "x": b64u(bytes(32))}, id="x25519"),
    ],
)
async def test_a_merchant_key_must_be_a_public_ed25519_or_p256_jwk(world: World, public_key: dict[str, str]) -> None:
    answer = await world.admin(
        "POST",
        "/v1/admin/merchants",
        {"name": "某图书馆", "region": "cq", "items": ["wl-030"], "public_key": public_key},
    )

    assert problem(answer) == (400, "invalid_request")
    assert answer.json()["fields"] == ["public_key"]
    if "d" in public_key:
        assert public_key["d"] not in answer.text
    assert await world.app.state.pool.fetchval("SELECT count(*) FROM client_keys") == 0
    assert await world.app.state.pool.fetchval("SELECT count(*) FROM merchants") == 0


async def test_a_channel_key_must_be_public(world: World) -> None:
    answer = await world.admin("POST", "/v1/admin/channels", {"name": "某银行App", "public_key": _private_p256_jwk()})

    assert problem(answer) == (400, "invalid_request")
    assert answer.json()["fields"] == ["public_key"]
    assert await world.app.state.pool.fetchval("SELECT count(*) FROM channels") == 0


async def test_a_merchant_can_be_read_back(world: World) -> None:
    merchant = await world.merchant(["wl-031", "wl-030"], name="武隆博物馆")

    answer = await world.admin("GET", f"/v1/admin/merchants/{merchant.ids['merchant_id']}")

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["merchant_id"] == merchant.ids["merchant_id"]
    assert body["name"] == "武隆博物馆"
    assert body["region"] == "cq"
    assert body["status"] == "active"
    assert body["items"] == ["wl-030", "wl-031"]


async def test_an_unknown_merchant_is_not_found(world: World) -> None:
    answer = await world.admin("GET", "/v1/admin/merchants/mch_0000000000000000000000000")

    assert problem(answer) == (404, "not_found")


async def test_changing_entitlements_changes_what_the_merchant_may_verify(world: World) -> None:
    merchant = await world.merchant(["wl-030"])
    device = await world.device()
    assert problem(await world.verify(merchant, await world.code(device), "wl-031")) == (
        403,
        "merchant_not_entitled",
    )

    changed = await world.admin(
        "PUT", f"/v1/admin/merchants/{merchant.ids['merchant_id']}/items", {"items": ["wl-031"]}
    )

    assert changed.status_code == 200, changed.text
    assert changed.json()["items"] == ["wl-031"]
    read = await world.admin("GET", f"/v1/admin/merchants/{merchant.ids['merchant_id']}")
    assert read.json()["items"] == ["wl-031"]
    accepted = await world.verify(merchant, await world.code(device), "wl-031")
    assert accepted.status_code == 200, accepted.text
    assert problem(await world.verify(merchant, await world.code(device), "wl-030")) == (
        403,
        "merchant_not_entitled",
    )


async def test_entitlements_to_an_unknown_item_are_refused_and_nothing_changes(world: World) -> None:
    merchant = await world.merchant(["wl-030"])

    answer = await world.admin(
        "PUT", f"/v1/admin/merchants/{merchant.ids['merchant_id']}/items", {"items": ["wl-031", "wl-999"]}
    )

    assert problem(answer) == (404, "item_unknown")
    read = await world.admin("GET", f"/v1/admin/merchants/{merchant.ids['merchant_id']}")
    assert read.json()["items"] == ["wl-030"]


async def test_entitlements_of_an_unknown_merchant_cannot_be_set(world: World) -> None:
    answer = await world.admin("PUT", "/v1/admin/merchants/mch_0000000000000000000000000/items", {"items": []})

    assert problem(answer) == (404, "not_found")


# --- the operator guard and the audit trail ------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/admin/cardholders", new_holder()),
        ("POST", "/v1/admin/cardholders/search", {"id_number": id_number()}),
        ("POST", "/v1/admin/cards/crd_0000000000000000000000000/status", {"status": "suspended"}),
        ("POST", "/v1/admin/merchants", {"name": "x", "region": "cq", "items": [], "public_key": {}}),
        ("GET", "/v1/admin/merchants/mch_0000000000000000000000000", None),
        ("PUT", "/v1/admin/merchants/mch_0000000000000000000000000/items", {"items": []}),
        ("POST", "/v1/admin/channels", {"name": "x", "public_key": {}}),
    ],
)
async def test_admin_endpoints_need_an_operator_session(
    world: World, method: str, path: str, body: dict[str, Any] | None
) -> None:
    answer = await world.client.request(method, path, json=body)

    assert problem(answer) == (401, "unauthorized")
    assert await world.app.state.pool.fetchval("SELECT count(*) FROM audit_log") == 0


async def admin_series(world: World) -> None:
    """A day at the desk: merchant, channel, cardholders, a look-up and status changes."""
    merchant = await world.merchant(["wl-030"])
    await world.admin("PUT", f"/v1/admin/merchants/{merchant.ids['merchant_id']}/items", {"items": ["wl-031"]})
    device = await world.device()
    await search(world, device.ids["id_number"])
    await world.set_status(device.ids["card_id"], "suspended")
    await world.set_status(device.ids["card_id"], "active")


async def test_the_audit_chain_verifies_after_a_series_of_admin_actions(world: World) -> None:
    await admin_series(world)

    actions = [r["action"] for r in await world.app.state.pool.fetch("SELECT action FROM audit_log ORDER BY entry_id")]

    assert {"merchant.registered", "merchant.entitlements", "card.registered", "cardholder.searched"} <= set(actions)
    assert {"card.suspended", "card.active", "channel.registered", "device.enrolled"} <= set(actions)
    assert await world.audit_intact()


async def test_the_audit_log_refuses_updates_and_deletes(world: World) -> None:
    await admin_series(world)
    pool = world.app.state.pool

    with pytest.raises(asyncpg.PostgresError, match="append-only"):
        await pool.execute("UPDATE audit_log SET actor = 'someone-else'")
    with pytest.raises(asyncpg.PostgresError, match="append-only"):
        await pool.execute("DELETE FROM audit_log WHERE entry_id = (SELECT max(entry_id) FROM audit_log)")
    assert await world.audit_intact()


@pytest.mark.parametrize(
    "tampering",
    [
        "UPDATE audit_log SET detail = '{}'::jsonb WHERE entry_id = (SELECT min(entry_id) + 1 FROM audit_log)",
        "UPDATE audit_log SET actor = 'op_innocent' WHERE action = 'card.suspended'",
        "DELETE FROM audit_log WHERE entry_id = (SELECT min(entry_id) + 2 FROM audit_log)",
    ],
    ids=["rewritten-detail", "rewritten-actor", "deleted-entry"],
)
async def test_tampering_with_the_audit_log_breaks_the_chain(world: World, tampering: str) -> None:
    await admin_series(world)
    pool: asyncpg.Pool = world.app.state.pool
    assert await world.audit_intact()

    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
        done = await conn.execute(tampering)
        await conn.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only")
    assert done.endswith(" 1")

    assert not await world.audit_intact()


async def test_the_region_belongs_to_each_card_not_to_the_person(world: World) -> None:
    number = id_number()
    first = await register(world, new_holder(number=number, region="sc"))
    second = await register(world, new_holder(number=number, region="cq"))
    assert first.status_code == second.status_code == 201
    assert (first.json()["region"], second.json()["region"]) == ("sc", "cq")
    assert first.json()["cardholder_id"] == second.json()["cardholder_id"]

    found = await search(world, number)

    regions = {card["card_id"]: card["region"] for card in found.json()["cards"]}
    assert regions == {first.json()["card_id"]: "sc", second.json()["card_id"]: "cq"}
