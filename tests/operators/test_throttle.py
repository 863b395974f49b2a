"""H4: logins anyone can send are throttled per source and per username before any hashing, and a flood of
them fills the login lane only: PIN checks keep their own, and a full lane sheds with 503 and Retry-After."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ecard.kit import passwords
from ecard.kit.passwords import LOGINS, PINS
from ecard.operators.models import LoginPolicy
from ecard.operators.service import source_of
from tests.operators.support import (
    Addresses,
    current_totp,
    login_checks,
    new_operator,
    to_start_of_window,
    wrong_totp,
)
from tests.support import World, problem

POLICY = LoginPolicy()


def retry_after(answer: httpx.Response) -> int:
    value = int(answer.headers["retry-after"])
    assert value >= 1
    return value


async def test_a_source_over_its_allowance_is_throttled_before_any_hashing(world: World, addresses: Addresses) -> None:
    username, password, uri = await new_operator(world)
    attacker = "198.51.100.7"
    to_start_of_window(world, POLICY.window_s)
    for _ in range(POLICY.per_source):
        answer = await addresses.login(attacker, "guess", "wrong-password-123", "123456")
        assert problem(answer)[1] in {"operator_credentials_invalid", "operator_locked"}
    checks = login_checks()

    throttled = await addresses.login(attacker, "someone-else", "any-password-12", "123456")

    assert problem(throttled) == (429, "too_many_requests")
    assert 1 <= retry_after(throttled) <= POLICY.window_s
    assert login_checks() == checks  # refused before Argon2 ran
    # the allowance is the source's: the operator, from elsewhere, logs in
    answer = await addresses.login("192.0.2.10", username, password, current_totp(world, uri))
    assert answer.status_code == 201, answer.text
    # and the source's next window opens it again
    world.clock.advance(retry_after(throttled))
    again = await addresses.login(attacker, "someone-else", "any-password-12", "123456")
    assert problem(again) == (401, "operator_credentials_invalid")


async def test_a_username_over_its_allowance_is_throttled_from_every_source(world: World, addresses: Addresses) -> None:
    username, password, uri = await new_operator(world)
    to_start_of_window(world, POLICY.window_s)
    # one attempt each from many sources: no source is over its own allowance or locked out
    for n in range(POLICY.per_username):
        answer = await addresses.login(f"203.0.113.{n + 1}", username, "wrong-password-123", "000000")
        assert problem(answer)[1] in {"operator_credentials_invalid", "operator_locked"}
    checks = login_checks()

    throttled = await addresses.login("192.0.2.10", username, password, current_totp(world, uri))

    assert problem(throttled) == (429, "too_many_requests")
    assert 1 <= retry_after(throttled) <= POLICY.window_s
    assert login_checks() == checks
    # another username from that source is not held up
    _, other_password, other_uri = await new_operator(world, "bob")
    answer = await addresses.login("192.0.2.10", "bob", other_password, current_totp(world, other_uri))
    assert answer.status_code == 201, answer.text


async def test_ipv6_sources_are_counted_per_64(world: World, addresses: Addresses) -> None:
    username, _, uri = await new_operator(world)
    to_start_of_window(world, POLICY.window_s)
    for n in range(POLICY.per_source):
        answer = await addresses.login(
            f"2001:db8:1:2::{n + 1:x}", username, "wrong-password-123", wrong_totp(world, uri)
        )
        assert problem(answer)[1] in {"operator_credentials_invalid", "operator_locked"}

    same_subscriber = await addresses.login("2001:db8:1:2:ffff::1", "bob", "any-password-12", "123456")
    next_door = await addresses.login("2001:db8:1:3::1", "bob", "any-password-12", "123456")

    assert problem(same_subscriber) == (429, "too_many_requests")
    assert problem(next_door) == (401, "operator_credentials_invalid")


@pytest.mark.parametrize(
    ("address", "source"),
    [
        ("192.0.2.1", "192.0.2.1"),
        ("::ffff:192.0.2.1", "192.0.2.1"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        (None, "unknown"),
        ("not-an-address", "unknown"),
    ],
)
def test_the_source_of_an_address(address: str | None, source: str) -> None:
    assert source_of(address) == source


@pytest.fixture
def login_lane_held(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """The login lane's hashing threads wait on the returned event before each check; PIN threads never do."""
    release = threading.Event()
    real: Callable[[str, str], bool] = passwords._verify

    def held(encoded: str, secret: str) -> bool:
        if threading.current_thread().name.startswith("argon2-login"):
            release.wait(timeout=60)
        return real(encoded, secret)

    monkeypatch.setattr(passwords, "_verify", held)
    try:
        yield release
    finally:
        release.set()


async def lane_gauges(world: World) -> dict[str, float]:
    text = (await world.client.get("/metrics")).text
    return {
        sample.labels["lane"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "ecard_argon2_busy"
    }


async def until_full() -> None:
    """Until every slot of the login lane is taken (the lane has no event to wait on: its count is watched)."""
    async with asyncio.timeout(30):
        while LOGINS.busy < LOGINS.capacity:  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def test_a_login_flood_fills_the_login_lane_only_and_the_overflow_is_shed_with_retry_after(
    world: World, addresses: Addresses, login_lane_held: threading.Event
) -> None:
    usernames = [f"flood-{n}" for n in range(LOGINS.capacity)]
    flood = [
        asyncio.create_task(addresses.login(f"198.51.100.{n + 1}", name, "wrong-password-123", "123456"))
        for n, name in enumerate(usernames)
    ]
    await until_full()
    assert PINS.busy == 0

    shed = await addresses.login("192.0.2.99", "latecomer", "wrong-password-123", "123456")

    assert problem(shed) == (503, "overloaded")
    assert 1 <= retry_after(shed) <= 60
    # the lanes as /metrics shows them: the login lane full, the PIN lane empty
    gauges = await lane_gauges(world)
    assert gauges["login"] == LOGINS.capacity
    assert gauges.get("pin", 0.0) == 0.0
    # a PIN is hashed and checked while every login still waits: nothing of the flood is ahead of it
    pin_hash = await PINS.hash("135790")
    assert await PINS.verify(pin_hash, "135790") is True
    assert LOGINS.busy == LOGINS.capacity
    assert all(not task.done() for task in flood)

    login_lane_held.set()
    answers = await asyncio.gather(*flood)
    assert [problem(a) for a in answers] == [(401, "operator_credentials_invalid")] * len(flood)
    assert LOGINS.busy == 0


async def test_a_shed_login_is_not_counted_against_its_username(
    world: World, addresses: Addresses, login_lane_held: threading.Event
) -> None:
    username, password, uri = await new_operator(world)
    flood = [
        asyncio.create_task(addresses.login(f"198.51.100.{n + 1}", f"flood-{n}", "wrong-password-123", "123456"))
        for n in range(LOGINS.capacity)
    ]
    await until_full()
    for _ in range(3):
        shed = await addresses.login("192.0.2.5", username, "wrong-password-123", "123456")
        assert problem(shed) == (503, "overloaded")
    login_lane_held.set()
    await asyncio.gather(*flood)

    # four real failures leave the fifth attempt, the right one, its chance: the shed ones did not count
    for _ in range(POLICY.pair_failures - 1):
        answer = await addresses.login("192.0.2.5", username, "wrong-password-123", wrong_totp(world, uri))
        assert problem(answer) == (401, "operator_credentials_invalid")
    answer = await addresses.login("192.0.2.5", username, password, current_totp(world, uri))
    assert answer.status_code == 201, answer.text
