"""`ecard operator add` on the command line: prints the new operator's credentials once, and they log in."""

from __future__ import annotations

import json

import pytest

from tests.support import World, ecard_cli, problem, totp_now


async def login(world: World, username: str, password: str, uri: str) -> int:
    answer = await world.client.post(
        "/v1/admin/sessions",
        json={"username": username, "password": password, "totp": totp_now(uri, at=world.clock.now())},
    )
    return answer.status_code


async def test_operator_add_prints_credentials_that_log_in(world: World) -> None:
    run = await ecard_cli(world, "operator", "add", "--username", "alice")

    assert run.returncode == 0, run.stderr
    printed = json.loads(run.stdout)
    assert set(printed) == {"username", "password", "totp_uri"}
    assert printed["username"] == "alice"
    assert len(printed["password"]) >= 12
    assert printed["totp_uri"].startswith("otpauth://totp/")
    assert await login(world, "alice", printed["password"], printed["totp_uri"]) == 201


async def test_operator_add_uses_a_given_password(world: World) -> None:
    run = await ecard_cli(world, "operator", "add", "--username", "bob", "--password", "correct horse battery")

    assert run.returncode == 0, run.stderr
    printed = json.loads(run.stdout)
    assert printed["password"] == "correct horse battery"
    assert await login(world, "bob", "correct horse battery", printed["totp_uri"]) == 201


async def test_adding_a_taken_username_fails_and_keeps_the_first_operator(world: World) -> None:
    first = json.loads((await ecard_cli(world, "operator", "add", "--username", "alice")).stdout)

    again = await ecard_cli(world, "operator", "add", "--username", "alice")

    assert again.returncode != 0
    assert "error" in json.loads(again.stderr.strip().splitlines()[-1])
    assert "password" not in again.stdout
    # the first operator's credentials were not replaced
    assert await login(world, "alice", first["password"], first["totp_uri"]) == 201
    assert await world.app.state.pool.fetchval("SELECT count(*) FROM operators WHERE username = 'alice'") == 1


@pytest.mark.parametrize("password", ["short", "elevenchars"])
async def test_a_too_short_password_is_refused(world: World, password: str) -> None:
    run = await ecard_cli(world, "operator", "add", "--username", "carol", "--password", password)

    assert run.returncode != 0
    assert "error" in json.loads(run.stderr.strip().splitlines()[-1])
    assert await world.app.state.pool.fetchval("SELECT count(*) FROM operators") == 0
    answer = await world.client.post(
        "/v1/admin/sessions", json={"username": "carol", "password": password, "totp": "000000"}
    )
    assert problem(answer) == (401, "operator_credentials_invalid")
