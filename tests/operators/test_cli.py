"""`ecard operator add` on the command line: prints the new operator's credentials once, and they log in."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass

import pytest

from ecard.config import Settings
from tests.support import World, problem, totp_now


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str
    stderr: str


async def ecard(world: World, *args: str) -> Run:
    settings: Settings = world.app.state.settings
    assert settings.database_url
    assert settings.redis_url
    assert settings.secret_key
    env = {k: v for k, v in os.environ.items() if not k.startswith("ECARD_")}
    env.update(
        ECARD_DATABASE_URL=settings.database_url,
        ECARD_REDIS_URL=settings.redis_url,
        ECARD_REDIS_PREFIX=settings.redis_prefix,
        ECARD_SECRET_KEY=settings.secret_key,
        ECARD_DATA_DIR=str(settings.data_dir),
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ecard.cli",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None
    return Run(process.returncode, out.decode(), err.decode())


async def login(world: World, username: str, password: str, uri: str) -> int:
    answer = await world.client.post(
        "/v1/admin/sessions",
        json={"username": username, "password": password, "totp": totp_now(uri, at=world.clock.now())},
    )
    return answer.status_code


async def test_operator_add_prints_credentials_that_log_in(world: World) -> None:
    run = await ecard(world, "operator", "add", "--username", "alice")

    assert run.returncode == 0, run.stderr
    printed = json.loads(run.stdout)
    assert set(printed) == {"username", "password", "totp_uri"}
    assert printed["username"] == "alice"
    assert len(printed["password"]) >= 12
    assert printed["totp_uri"].startswith("otpauth://totp/")
    assert await login(world, "alice", printed["password"], printed["totp_uri"]) == 201


async def test_operator_add_uses_a_given_password(world: World) -> None:
    run = await ecard(world, "operator", "add", "--username", "bob", "--password", "correct horse battery")

    assert run.returncode == 0, run.stderr
    printed = json.loads(run.stdout)
    assert printed["password"] == "correct horse battery"
    assert await login(world, "bob", "correct horse battery", printed["totp_uri"]) == 201


async def test_adding_a_taken_username_fails_and_keeps_the_first_operator(world: World) -> None:
    first = json.loads((await ecard(world, "operator", "add", "--username", "alice")).stdout)

    again = await ecard(world, "operator", "add", "--username", "alice")

    assert again.returncode != 0
    assert "error" in json.loads(again.stderr.strip().splitlines()[-1])
    assert "password" not in again.stdout
    # the first operator's credentials were not replaced
    assert await login(world, "alice", first["password"], first["totp_uri"]) == 201
    assert await world.app.state.pool.fetchval("SELECT count(*) FROM operators WHERE username = 'alice'") == 1


@pytest.mark.parametrize("password", ["short", "elevenchars"])
async def test_a_too_short_password_is_refused(world: World, password: str) -> None:
    run = await ecard(world, "operator", "add", "--username", "carol", "--password", password)

    assert run.returncode != 0
    assert "error" in json.loads(run.stderr.strip().splitlines()[-1])
    assert await world.app.state.pool.fetchval("SELECT count(*) FROM operators") == 0
    answer = await world.client.post(
        "/v1/admin/sessions", json={"username": "carol", "password": password, "totp": "000000"}
    )
    assert problem(answer) == (401, "operator_credentials_invalid")
