"""Operator logins: password plus TOTP, one-time codes used once, lockout, bearer sessions kept in Redis."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from datetime import datetime
from typing import Any

import argon2
import httpx
import pyotp
import pytest

from tests.support import World, ed25519_actor, problem, totp_now

LOCK_S = 15 * 60


async def new_operator(world: World, username: str = "alice") -> tuple[str, str, str]:
    password, uri = await world.app.state.operators.add(username)
    return username, password, uri


async def login(world: World, username: str, password: str, totp: str) -> httpx.Response:
    return await world.client.post(
        "/v1/admin/sessions", json={"username": username, "password": password, "totp": totp}
    )


def current_totp(world: World, uri: str) -> str:
    return totp_now(uri, at=world.clock.now())


def wrong_totp(world: World, uri: str) -> str:
    """A six-digit code that no step the server accepts right now (previous, current, next) would show."""
    now = world.clock.now()
    accepted = {totp_now(uri, at=now + step) for step in (-30, 0, 30)}
    return next(c for c in (f"{n:06d}" for n in range(0, 10**6, 7919)) if c not in accepted)


async def channel_created_with(world: World, token: str) -> httpx.Response:
    return await world.client.post(
        "/v1/admin/channels",
        json={"name": "某银行App", "public_key": ed25519_actor().jwk},
        headers={"Authorization": f"Bearer {token}"},
    )


async def session_keys(world: World) -> list[str]:
    prefix: str = world.app.state.settings.redis_prefix
    return [k.decode() async for k in world.app.state.redis.scan_iter(match=f"{prefix}*session*")]


async def test_right_password_and_totp_open_a_session(world: World) -> None:
    username, password, uri = await new_operator(world)

    answer = await login(world, username, password, current_totp(world, uri))

    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert set(body) >= {"token", "expires_at"}
    assert len(body["token"]) >= 32
    expires_at = datetime.fromisoformat(body["expires_at"]).timestamp()
    ttl = world.app.state.settings.session_ttl_s
    assert abs(expires_at - (world.clock.now() + ttl)) < 5


async def test_the_session_token_opens_admin_endpoints(world: World) -> None:
    username, password, uri = await new_operator(world)
    token = (await login(world, username, password, current_totp(world, uri))).json()["token"]

    answer = await channel_created_with(world, token)

    assert answer.status_code == 201, answer.text
    assert answer.json()["channel_id"].startswith("chn_")


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer not-a-session-token", "Bearer ", "Basic YWxpY2U6c2VjcmV0", "not-even-a-scheme"],
    ids=["missing", "garbage", "empty", "basic", "bare"],
)
async def test_admin_endpoints_refuse_a_missing_or_bogus_bearer(world: World, authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}

    answer = await world.client.post(
        "/v1/admin/channels",
        json={"name": "某银行App", "public_key": ed25519_actor().jwk},
        headers=headers,
    )

    assert problem(answer) == (401, "unauthorized")
    assert await world.app.state.pool.fetchval("SELECT count(*) FROM channels") == 0


async def test_wrong_password_wrong_totp_and_unknown_user_get_the_same_answer(world: World) -> None:
    username, password, uri = await new_operator(world)

    answers = [
        await login(world, username, password + "x", current_totp(world, uri)),
        await login(world, username, password, wrong_totp(world, uri)),
        await login(world, "nobody", password, current_totp(world, uri)),
        await login(world, username, "", ""),
    ]

    bodies: list[dict[str, Any]] = []
    for answer in answers:
        assert problem(answer) == (401, "operator_credentials_invalid")
        bodies.append({k: answer.json()[k] for k in ("title", "detail", "code", "type")})
    # nothing tells a guesser which of the three parts was wrong
    assert all(body == bodies[0] for body in bodies)
    # and none of the wrong attempts left a session behind
    assert await session_keys(world) == []


async def test_a_username_no_operator_could_have_is_refused_like_a_wrong_one(world: World) -> None:
    # found by the fuzz: a NUL in the username reached PostgreSQL, which refuses it in text, and gave a 500
    username, password, uri = await new_operator(world)

    for odd in (f"{username}\x00", "\x98\xc0:\x009", username + "x" * 64, ""):
        answer = await login(world, odd, password, current_totp(world, uri))
        assert problem(answer) == (401, "operator_credentials_invalid")
    # the operator itself still logs in
    assert (await login(world, username, password, current_totp(world, uri))).status_code == 201


async def test_a_login_without_a_totp_field_is_an_invalid_request(world: World) -> None:
    username, password, _ = await new_operator(world)

    answer = await world.client.post("/v1/admin/sessions", json={"username": username, "password": password})

    assert problem(answer) == (400, "invalid_request")
    # named in the problem (Litestar reports a missing member under `errors`, not `fields`)
    assert any("totp" in message for message in answer.json().get("errors", []) + answer.json()["fields"])


async def test_a_totp_code_logs_in_once_only(world: World) -> None:
    username, password, uri = await new_operator(world)
    code = current_totp(world, uri)
    assert (await login(world, username, password, code)).status_code == 201

    replay = await login(world, username, password, code)

    assert problem(replay) == (401, "operator_credentials_invalid")
    # the refusal is about the used code, not the operator: the next step's code still works
    following = await login(world, username, password, totp_now(uri, at=world.clock.now() + 30))
    assert following.status_code == 201, following.text


async def test_a_totp_code_sent_twice_at_once_opens_one_session(world: World) -> None:
    username, password, uri = await new_operator(world)
    code = current_totp(world, uri)

    answers = await asyncio.gather(*(login(world, username, password, code) for _ in range(3)))

    assert sorted(a.status_code for a in answers) == [201, 401, 401]
    assert len(await session_keys(world)) == 1


@pytest.mark.parametrize("wrong_part", ["password", "totp"])
async def test_five_failures_lock_the_account_for_fifteen_minutes(world: World, wrong_part: str) -> None:
    username, password, uri = await new_operator(world)

    async def fail() -> httpx.Response:
        if wrong_part == "password":
            return await login(world, username, "wrong-password-123", current_totp(world, uri))
        return await login(world, username, password, wrong_totp(world, uri))

    for _ in range(4):
        assert problem(await fail()) == (401, "operator_credentials_invalid")
    assert problem(await fail()) in {(401, "operator_credentials_invalid"), (423, "operator_locked")}

    # locked: even the right password with a fresh code is refused
    assert problem(await login(world, username, password, current_totp(world, uri))) == (423, "operator_locked")
    world.clock.advance(LOCK_S - 5)
    assert problem(await login(world, username, password, current_totp(world, uri))) == (423, "operator_locked")

    world.clock.advance(6)
    answer = await login(world, username, password, current_totp(world, uri))
    assert answer.status_code == 201, answer.text


async def test_the_failure_count_starts_again_after_a_lock_ends(world: World) -> None:
    username, password, uri = await new_operator(world)
    for _ in range(5):
        await login(world, username, "wrong-password-123", current_totp(world, uri))
    assert problem(await login(world, username, password, current_totp(world, uri))) == (423, "operator_locked")
    world.clock.advance(LOCK_S + 1)

    for _ in range(4):
        answer = await login(world, username, "wrong-password-123", current_totp(world, uri))
        assert problem(answer) == (401, "operator_credentials_invalid")

    answer = await login(world, username, password, current_totp(world, uri))
    assert answer.status_code == 201, answer.text


async def test_a_success_clears_earlier_failures(world: World) -> None:
    username, password, uri = await new_operator(world)
    for _ in range(4):
        await login(world, username, "wrong-password-123", current_totp(world, uri))
    assert (await login(world, username, password, current_totp(world, uri))).status_code == 201

    for _ in range(4):
        answer = await login(world, username, "wrong-password-123", current_totp(world, uri))
        assert problem(answer) == (401, "operator_credentials_invalid")


async def test_a_lock_is_per_operator(world: World) -> None:
    _, _, alice_uri = await new_operator(world, "alice")
    bob, bob_password, bob_uri = await new_operator(world, "bob")
    for _ in range(5):
        await login(world, "alice", "wrong-password-123", current_totp(world, alice_uri))

    answer = await login(world, bob, bob_password, current_totp(world, bob_uri))

    assert answer.status_code == 201, answer.text


async def test_the_session_lives_in_redis_for_the_session_ttl_and_ends_with_its_key(world: World) -> None:
    username, password, uri = await new_operator(world)
    token = (await login(world, username, password, current_totp(world, uri))).json()["token"]

    keys = await session_keys(world)
    assert len(keys) == 1
    # the bearer token itself is not what Redis holds
    assert token not in keys[0]
    assert hashlib.sha256(token.encode()).hexdigest() in keys[0]
    ttl = await world.app.state.redis.ttl(keys[0])
    # a minute's slack: the login and the lookups before this read take their time on a loaded machine
    assert world.app.state.settings.session_ttl_s - 60 <= ttl <= world.app.state.settings.session_ttl_s

    await world.app.state.redis.delete(keys[0])

    assert problem(await channel_created_with(world, token)) == (401, "unauthorized")


async def test_passwords_are_argon2id_hashes_and_totp_secrets_are_sealed(world: World) -> None:
    username, password, uri = await new_operator(world)
    totp_secret = pyotp.parse_uri(uri).secret

    row = await world.app.state.pool.fetchrow("SELECT * FROM operators WHERE username = $1", username)

    assert row["password_hash"].startswith("$argon2id$")
    assert argon2.PasswordHasher().verify(row["password_hash"], password)
    sealed = bytes(row["totp_secret"])
    assert totp_secret.encode() not in sealed
    assert base64.b32decode(totp_secret) not in sealed
    for value in dict(row).values():
        text = bytes(value).decode("latin-1") if isinstance(value, bytes | memoryview) else str(value)
        assert password not in text
        assert totp_secret not in text


async def test_logging_out_ends_this_session_and_no_other(world: World) -> None:
    username, password, uri = await new_operator(world)
    desk = (await login(world, username, password, current_totp(world, uri))).json()["token"]
    laptop = (await login(world, username, password, totp_now(uri, at=world.clock.now() + 30))).json()["token"]

    answer = await world.client.delete("/v1/admin/sessions/current", headers={"Authorization": f"Bearer {desk}"})

    assert answer.status_code == 204, answer.text
    assert problem(await channel_created_with(world, desk)) == (401, "unauthorized")
    assert (await channel_created_with(world, laptop)).status_code == 201
    # a session that has ended cannot be logged out of again
    again = await world.client.delete("/v1/admin/sessions/current", headers={"Authorization": f"Bearer {desk}"})
    assert problem(again) == (401, "unauthorized")


async def test_logging_out_everywhere_ends_every_session_of_the_operator_only(world: World) -> None:
    username, password, uri = await new_operator(world)
    desk = (await login(world, username, password, current_totp(world, uri))).json()["token"]
    laptop = (await login(world, username, password, totp_now(uri, at=world.clock.now() + 30))).json()["token"]
    bob, bob_password, bob_uri = await new_operator(world, "bob")
    bobs = (await login(world, bob, bob_password, current_totp(world, bob_uri))).json()["token"]

    answer = await world.client.delete("/v1/admin/sessions", headers={"Authorization": f"Bearer {laptop}"})

    assert answer.status_code == 204, answer.text
    assert problem(await channel_created_with(world, desk)) == (401, "unauthorized")
    assert problem(await channel_created_with(world, laptop)) == (401, "unauthorized")
    assert (await channel_created_with(world, bobs)).status_code == 201
    # logging in again opens a session that works
    world.clock.advance(60)
    fresh = (await login(world, username, password, current_totp(world, uri))).json()["token"]
    assert (await channel_created_with(world, fresh)).status_code == 201


@pytest.mark.parametrize("path", ["/v1/admin/sessions/current", "/v1/admin/sessions"])
@pytest.mark.parametrize("authorization", [None, "Bearer not-a-session-token", "Basic YWxpY2U6c2VjcmV0"])
async def test_logging_out_needs_a_live_session(world: World, path: str, authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}

    answer = await world.client.delete(path, headers=headers)

    assert problem(answer) == (401, "unauthorized")


async def test_logging_out_is_audited(world: World) -> None:
    username, password, uri = await new_operator(world)
    first = (await login(world, username, password, current_totp(world, uri))).json()["token"]
    second = (await login(world, username, password, totp_now(uri, at=world.clock.now() + 30))).json()["token"]

    await world.client.delete("/v1/admin/sessions/current", headers={"Authorization": f"Bearer {first}"})
    await world.client.delete("/v1/admin/sessions", headers={"Authorization": f"Bearer {second}"})

    rows = await world.app.state.pool.fetch(
        "SELECT actor, subject, detail FROM audit_log WHERE action = 'operator.logout' ORDER BY entry_id"
    )
    operator_id = await world.app.state.pool.fetchval("SELECT operator_id FROM operators WHERE username = $1", username)
    assert [(r["actor"], r["subject"], r["detail"]) for r in rows] == [
        (operator_id, operator_id, {"sessions": "this"}),
        (operator_id, operator_id, {"sessions": "all"}),
    ]
    assert await world.audit_intact()
