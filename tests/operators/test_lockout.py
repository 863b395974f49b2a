"""M1: failed logins are counted before they are checked, so racing them gets no extra guesses; a source that
fails locks itself out, not the operator; failures from many sources lock the account, with growing locks,
and end its sessions; and every failure costs and answers the same, for a username nobody has too."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from ecard.operators.models import LoginPolicy
from tests.operators.support import Addresses, current_totp, login_checks, new_operator, wrong_totp
from tests.support import World, problem

POLICY = LoginPolicy()
WRONG = "wrong-password-123"


def codes(answers: list[httpx.Response]) -> list[str]:
    return [problem(answer)[1] for answer in answers]


async def admin_call(world: World, token: str) -> httpx.Response:
    return await world.client.get("/v1/admin/portals", headers={"Authorization": f"Bearer {token}"})


async def test_concurrent_wrong_logins_from_one_source_get_no_more_checks_than_the_limit(
    world: World, addresses: Addresses
) -> None:
    username, password, uri = await new_operator(world)
    checks = login_checks()

    racing = POLICY.per_source - 1  # all within the source's allowance, with one left for the right password
    answers = await asyncio.gather(
        *(addresses.login("198.51.100.1", username, WRONG, current_totp(world, uri)) for _ in range(racing))
    )

    assert login_checks() - checks == POLICY.pair_failures
    found = codes(answers)
    assert found.count("operator_credentials_invalid") == POLICY.pair_failures - 1
    assert found.count("operator_locked") == racing - POLICY.pair_failures + 1
    # and the right password from that source is locked out too, without a check
    right = await addresses.login("198.51.100.1", username, password, current_totp(world, uri))
    assert problem(right) == (423, "operator_locked")
    assert login_checks() - checks == POLICY.pair_failures


async def test_concurrent_wrong_logins_from_many_sources_get_no_more_checks_than_the_account_limit(
    world: World, addresses: Addresses
) -> None:
    username, _, uri = await new_operator(world)
    checks = login_checks()

    answers = await asyncio.gather(
        *(
            addresses.login(f"203.0.113.{n + 1}", username, WRONG, current_totp(world, uri))
            for n in range(POLICY.per_username)
        )
    )

    # some may be shed (503) when they outnumber the login lane; those are given back, never checked
    assert 1 <= login_checks() - checks <= POLICY.account_failures
    assert set(codes(answers)) <= {"operator_credentials_invalid", "operator_locked", "overloaded"}


async def test_a_source_that_fails_locks_itself_out_and_not_the_operator(world: World, addresses: Addresses) -> None:
    username, password, uri = await new_operator(world)
    token = (await addresses.login("192.0.2.10", username, password, current_totp(world, uri))).json()["token"]
    world.clock.advance(30)

    for _ in range(POLICY.pair_failures - 1):
        assert problem(await addresses.login("198.51.100.1", username, WRONG, "000000")) == (
            401,
            "operator_credentials_invalid",
        )
    locking = await addresses.login("198.51.100.1", username, WRONG, "000000")

    assert problem(locking) == (423, "operator_locked")
    assert int(locking.headers["retry-after"]) == POLICY.pair_lock_s
    # the operator's own session still works, and the operator logs in from their own desk
    assert (await admin_call(world, token)).status_code == 200
    answer = await addresses.login("192.0.2.10", username, password, current_totp(world, uri))
    assert answer.status_code == 201, answer.text
    # the attacker's source stays locked out, whatever it sends
    assert problem(await addresses.login("198.51.100.1", username, password, "000000")) == (423, "operator_locked")


async def fail_from_sources(addresses: Addresses, username: str, uri_world: tuple[World, str], first: int) -> str:
    """POLICY.account_failures failures in a row, pair_failures from each source; the code of the last answer."""
    world, uri = uri_world
    last = ""
    for n in range(POLICY.account_failures):
        source = f"203.0.113.{first + n // POLICY.pair_failures}"
        last = problem(await addresses.login(source, username, WRONG, wrong_totp(world, uri)))[1]
    return last


async def test_failures_from_many_sources_lock_the_account_end_its_sessions_and_lock_longer_each_time(
    world: World, addresses: Addresses
) -> None:
    username, password, uri = await new_operator(world)
    token = (await addresses.login("192.0.2.10", username, password, current_totp(world, uri))).json()["token"]
    assert (await admin_call(world, token)).status_code == 200

    assert await fail_from_sources(addresses, username, (world, uri), first=1) == "operator_locked"

    # the account itself is locked, for every source, and the session that was open has ended
    world.clock.advance(30)
    locked = await addresses.login("192.0.2.10", username, password, current_totp(world, uri))
    assert problem(locked) == (423, "operator_locked")
    assert POLICY.account_lock_s - 60 <= int(locked.headers["retry-after"]) <= POLICY.account_lock_s
    assert problem(await admin_call(world, token)) == (401, "unauthorized")

    # the lock ends: but ten more failures in a row lock it for twice as long
    world.clock.advance(POLICY.account_lock_s)
    assert await fail_from_sources(addresses, username, (world, uri), first=11) == "operator_locked"
    world.clock.advance(POLICY.account_lock_s + 30)
    still = await addresses.login("192.0.2.10", username, password, current_totp(world, uri))
    assert problem(still) == (423, "operator_locked")
    world.clock.advance(POLICY.account_lock_s)
    answer = await addresses.login("192.0.2.10", username, password, current_totp(world, uri))
    assert answer.status_code == 201, answer.text


async def test_a_username_nobody_has_is_answered_and_counted_like_an_operators(
    world: World, addresses: Addresses
) -> None:
    username, _, uri = await new_operator(world)

    async def attempts(name: str, source: str) -> tuple[list[dict[str, Any]], float]:
        checks = login_checks()
        answers = [
            await addresses.login(source, name, WRONG, current_totp(world, uri))
            for _ in range(POLICY.pair_failures + 1)
        ]
        bodies = [
            {"status": a.status_code, **{k: a.json()[k] for k in ("type", "title", "detail", "code")}} for a in answers
        ]
        return bodies, login_checks() - checks

    known = await attempts(username, "198.51.100.1")
    unknown = await attempts("nobody-here", "198.51.100.2")

    # the same answers in the same order (the fifth locks, the sixth is refused unchecked), and the same checks
    assert known == unknown
    assert [b["code"] for b in known[0]][-2:] == ["operator_locked", "operator_locked"]
    assert known[1] == POLICY.pair_failures


async def test_logins_are_audited_without_secrets(world: World, addresses: Addresses) -> None:
    username, password, uri = await new_operator(world)
    assert problem(await addresses.login("198.51.100.1", username, WRONG, current_totp(world, uri)))[0] == 401
    assert problem(await addresses.login("198.51.100.1", username, password, wrong_totp(world, uri)))[0] == 401
    assert problem(await addresses.login("198.51.100.1", "nobody-here", password, "123456"))[0] == 401
    opened = await addresses.login("192.0.2.10", username, password, current_totp(world, uri))
    assert opened.status_code == 201, opened.text
    operator_id = await world.app.state.pool.fetchval("SELECT operator_id FROM operators WHERE username = $1", username)

    rows = await world.app.state.pool.fetch(
        "SELECT actor, action, subject, detail, detail::text AS text FROM audit_log"
        " WHERE action LIKE 'operator.%' ORDER BY entry_id"
    )

    assert [(r["action"], r["subject"], r["detail"]) for r in rows] == [
        ("operator.login_failed", operator_id, {"source": "198.51.100.1", "wrong": ["password"]}),
        ("operator.login_failed", operator_id, {"source": "198.51.100.1", "wrong": ["totp"]}),
        ("operator.login_failed", "unknown", {"source": "198.51.100.1", "wrong": ["password", "totp"]}),
        ("operator.login", operator_id, {"source": "192.0.2.10"}),
    ]
    assert [r["actor"] for r in rows] == ["source:198.51.100.1"] * 3 + [operator_id]
    for row in rows:
        assert password not in row["text"]
        assert WRONG not in row["text"]
        assert "nobody-here" not in row["text"]
    assert await world.audit_intact()
