"""The published issuer keys: public, rotated without breaking live codes, revoked at once from the command line."""

from __future__ import annotations

import base64
import json
import os
from datetime import datetime
from typing import Any

import base45
import cbor2
import pytest

from ecard.codes import keys as key_ring_module
from tests.support import World, ecard_cli, problem


@pytest.fixture(autouse=True)
def no_periodic_refresh(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each worker also reloads its keys every few seconds; "at once" must not owe anything to that."""
    monkeypatch.setattr(key_ring_module, "REFRESH_S", 3600.0)


def _kid_of(code: str) -> str:
    """The base64url kid in a code's protected header, as the key set publishes it."""
    protected = cbor2.loads(base45.b45decode(code.removeprefix("EC1:"))).value[0]
    kid: bytes = cbor2.loads(protected)[4]
    return base64.urlsafe_b64encode(kid).rstrip(b"=").decode()


def _timestamp(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


async def _keys(world: World) -> dict[str, dict[str, Any]]:
    answer = await world.client.get("/v1/issuer/keys")
    assert answer.status_code == 200, answer.text
    return {key["kid"]: key for key in answer.json()["keys"]}


async def _active_kid(world: World) -> str:
    [kid] = [kid for kid, key in (await _keys(world)).items() if key["status"] == "active"]
    return kid


async def _cli(world: World, *args: str) -> tuple[int, str, str]:
    run = await ecard_cli(world, *args)
    return run.returncode, run.stdout, run.stderr


async def test_the_issuer_keys_are_public_and_complete(world: World) -> None:
    answer = await world.client.get("/v1/issuer/keys")  # no signature, no bearer

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["issuer"] == "cq"
    [key] = body["keys"]
    assert key["kty"] == "OKP"
    assert key["crv"] == "Ed25519"
    assert key["alg"] == "EdDSA"
    assert key["status"] == "active"
    assert len(base64.urlsafe_b64decode(key["kid"] + "==")) == 8
    assert len(base64.urlsafe_b64decode(key["x"] + "=")) == 32
    assert "d" not in key  # never the private part
    assert _timestamp(key["not_before"]) <= world.clock.now() + 1
    assert key["not_after"] is None


async def test_codes_carry_the_kid_of_the_active_key(world: World) -> None:
    device = await world.device()
    assert _kid_of(await world.code(device)) == await _active_kid(world)


async def test_a_rotation_signs_new_codes_with_the_new_key_and_keeps_old_codes_valid(world: World) -> None:
    merchant = await world.merchant(["wl-030"])
    device = await world.device()
    old_kid = await _active_kid(world)
    old_code = await world.code(device)

    rotated_at = world.clock.now()
    await world.app.state.key_ring.rotate("test")

    new_kid = await _active_kid(world)
    assert new_kid != old_kid
    new_code = await world.code(device)
    assert _kid_of(new_code) == new_kid
    accepted_old = await world.verify(merchant, old_code)
    assert accepted_old.status_code == 200, accepted_old.text
    accepted_new = await world.verify(merchant, new_code)
    assert accepted_new.status_code == 200, accepted_new.text

    retired = (await _keys(world))[old_kid]
    assert retired["status"] == "retired"
    # verifiable for as long as a code it signed can still be honoured: lifetime plus clock skew
    assert abs(_timestamp(retired["not_after"]) - (rotated_at + 60 + 30)) < 3

    world.clock.advance(60 + 30 + 5)
    assert set(await _keys(world)) == {new_kid}


async def test_a_key_revoked_from_the_command_line_is_refused_at_once(world: World) -> None:
    merchant = await world.merchant(["wl-030"])
    device = await world.device()
    revoked_kid = await _active_kid(world)
    minted_before = await world.code(device)

    status, out, err = await _cli(world, "keys", "revoke", "--", revoked_kid)

    assert status == 0, err
    printed = json.loads(out)
    assert printed["revoked"] == revoked_kid
    assert {key["kid"]: key["status"] for key in printed["keys"]}[revoked_kid] == "revoked"
    # no waiting for any worker to notice: the very next verification refuses it, the next code avoids it
    assert problem(await world.verify(merchant, minted_before)) == (400, "key_revoked")
    minted_after = await world.code(device)
    assert _kid_of(minted_after) != revoked_kid
    accepted = await world.verify(merchant, minted_after)
    assert accepted.status_code == 200, accepted.text

    published = await _keys(world)
    assert published[revoked_kid]["status"] == "revoked"
    assert published[_kid_of(minted_after)]["status"] == "active"


async def test_revoking_a_retired_key_refuses_its_codes_and_keeps_the_active_key(world: World) -> None:
    merchant = await world.merchant(["wl-030"])
    device = await world.device()
    old_kid = await _active_kid(world)
    old_code = await world.code(device)
    await world.app.state.key_ring.rotate("test")
    active_kid = await _active_kid(world)

    status, _out, err = await _cli(world, "keys", "revoke", "--", old_kid)

    assert status == 0, err
    assert problem(await world.verify(merchant, old_code)) == (400, "key_revoked")
    published = await _keys(world)
    assert published[old_kid]["status"] == "revoked"
    assert await _active_kid(world) == active_kid
    accepted = await world.verify(merchant, await world.code(device))
    assert accepted.status_code == 200, accepted.text


async def test_the_command_line_rotates_and_lists_keys_as_json(world: World) -> None:
    merchant = await world.merchant(["wl-030"])
    device = await world.device()
    old_kid = await _active_kid(world)
    old_code = await world.code(device)

    status, out, err = await _cli(world, "keys", "rotate")
    assert status == 0, err
    rotated = json.loads(out)
    new_kid = rotated["rotated_to"]
    assert new_kid != old_kid
    assert {key["kid"]: key["status"] for key in rotated["keys"]} == {old_kid: "retired", new_kid: "active"}

    status, out, err = await _cli(world, "keys", "list")
    assert status == 0, err
    listed = json.loads(out)
    assert listed["issuer"] == "cq"
    assert {key["kid"]: key["status"] for key in listed["keys"]} == {old_kid: "retired", new_kid: "active"}
    assert all(key["alg"] == "EdDSA" and "d" not in key for key in listed["keys"])

    # what every worker's refresher does every few seconds
    await world.app.state.key_ring.refresh()
    new_code = await world.code(device)
    assert _kid_of(new_code) == new_kid
    for code in (old_code, new_code):
        accepted = await world.verify(merchant, code)
        assert accepted.status_code == 200, accepted.text


async def test_revoking_an_unknown_kid_fails_and_changes_nothing(world: World) -> None:
    merchant = await world.merchant(["wl-030"])
    device = await world.device()
    code = await world.code(device)
    before = await _keys(world)
    nobody = base64.urlsafe_b64encode(os.urandom(8)).rstrip(b"=").decode()

    status, out, err = await _cli(world, "keys", "revoke", "--", nobody)

    assert status != 0
    assert out.strip() == ""
    assert json.loads(err.strip().splitlines()[-1])["error"] == "unknown_key"
    await world.app.state.key_ring.refresh()
    assert await _keys(world) == before
    accepted = await world.verify(merchant, code)
    assert accepted.status_code == 200, accepted.text


async def test_every_rotation_and_revocation_is_audited_with_who_ran_it(world: World) -> None:
    first = await _active_kid(world)
    status, out, err = await _cli(world, "keys", "rotate")
    assert status == 0, err
    second = json.loads(out)["rotated_to"]
    status, _out, err = await _cli(world, "keys", "revoke", "--", second)
    assert status == 0, err
    await world.app.state.key_ring.refresh()
    third = await _active_kid(world)

    rows = await world.app.state.pool.fetch(
        "SELECT actor, action, subject, detail FROM audit_log WHERE action LIKE 'issuer_key.%' ORDER BY entry_id"
    )

    assert [(r["action"], r["subject"]) for r in rows] == [
        ("issuer_key.rotated", second),
        ("issuer_key.revoked", second),
    ]
    assert rows[0]["detail"] == {"retired": [first]}
    assert rows[1]["detail"] == {"was": "active", "replaced_by": third}
    assert all(r["actor"].startswith("cli:") and len(r["actor"]) > len("cli:") for r in rows)


async def test_a_refused_revocation_leaves_no_audit_entry(world: World) -> None:
    nobody = base64.urlsafe_b64encode(os.urandom(8)).rstrip(b"=").decode()

    status, _out, _err = await _cli(world, "keys", "revoke", "--", nobody)

    assert status != 0
    assert await world.app.state.pool.fetchval("SELECT count(*) FROM audit_log WHERE action LIKE 'issuer_key.%'") == 0
