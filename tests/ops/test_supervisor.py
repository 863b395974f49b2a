"""Background loops are supervised: one that raises or returns is restarted, its restarts and health metered,
and what it failed with logged by type only."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import pytest

from ecard.kit.metrics import REGISTRY
from ecard.kit.supervisor import Supervisor, woken
from ecard.ops.logs import JsonFormatter
from tests.support import World

SECRET = "张小三 500101199001011234"


def restarts(task: str) -> float:
    return REGISTRY.get_sample_value("ecard_background_restarts_total", {"task": task}) or 0.0


def up(task: str) -> float | None:
    return REGISTRY.get_sample_value("ecard_background_up", {"task": task})


class Flaky:
    """A loop that fails the first `failures` times it is started, then runs until cancelled."""

    def __init__(self, failures: int, error: Exception | None = None) -> None:
        self.failures = failures
        self.error = error
        self.starts = 0
        self.running = asyncio.Event()

    async def run(self) -> None:
        self.starts += 1
        if self.starts <= self.failures:
            if self.error is None:
                return
            raise self.error
        self.running.set()
        await asyncio.Event().wait()


async def test_a_loop_that_raises_is_restarted_counted_and_logged_by_type_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="ecard.supervisor")
    loop = Flaky(failures=2, error=ValueError(f"bad row for {SECRET}"))
    before = restarts("flaky-raises")
    supervisor = Supervisor(base_delay_s=0.0)

    supervisor.start("flaky-raises", loop.run)
    async with asyncio.timeout(10):
        await loop.running.wait()

    assert loop.starts == 3
    assert restarts("flaky-raises") - before == 2
    assert up("flaky-raises") == 1.0
    logged = [JsonFormatter().format(r) for r in caplog.records if getattr(r, "task", "") == "flaky-raises"]
    assert len(logged) == 2
    assert all('"error_type": "ValueError"' in line for line in logged)
    assert not any(SECRET in line or "bad row" in line for line in logged)
    assert all(r.exc_info is None for r in caplog.records)

    await supervisor.stop()
    assert up("flaky-raises") == 0.0


async def test_a_loop_that_returns_is_restarted_too() -> None:
    loop = Flaky(failures=1)
    before = restarts("flaky-returns")
    supervisor = Supervisor(base_delay_s=0.0)

    supervisor.start("flaky-returns", loop.run)
    async with asyncio.timeout(10):
        await loop.running.wait()

    assert restarts("flaky-returns") - before == 1
    await supervisor.stop()


async def test_a_loop_waiting_to_restart_is_down_until_it_runs_again() -> None:
    loop = Flaky(failures=1, error=RuntimeError("boom"))
    supervisor = Supervisor(base_delay_s=3600.0, max_delay_s=3600.0)

    supervisor.start("flaky-slow", loop.run)
    async with asyncio.timeout(10):
        while restarts("flaky-slow") == 0:  # noqa: ASYNC110 - the supervisor has no event for this
            await asyncio.sleep(0.01)

    assert up("flaky-slow") == 0.0
    assert loop.starts == 1
    await supervisor.stop()


async def test_two_loops_of_one_name_are_refused() -> None:
    supervisor = Supervisor()
    supervisor.start("twice", Flaky(failures=0).run)

    with pytest.raises(ValueError, match="already supervised"):
        supervisor.start("twice", Flaky(failures=0).run)
    await supervisor.stop()


class Idler:
    """A loop shaped like the service's own (callbacks, disbursements): a round, then an idle wait for a wake-up."""

    def __init__(self) -> None:
        self.wake = asyncio.Event()
        self.idle = asyncio.Event()
        self.ended = asyncio.Event()

    async def run(self) -> None:
        try:
            while True:
                self.wake.clear()
                self.idle.set()
                await woken(self.wake, 60)
        finally:
            self.ended.set()


async def test_a_loop_woken_in_the_turn_it_is_stopped_still_stops() -> None:
    """Python 3.11's asyncio.wait_for lost such a cancellation (python/cpython#86296): the loop ran on and
    stop() waited for ever, which hung the service's shutdown (and CI) once in a while."""
    idler = Idler()
    supervisor = Supervisor()
    supervisor.start("idler", idler.run)
    await idler.idle.wait()
    idler.wake.set()
    await asyncio.sleep(0)  # the wake-up is under way when the stop comes
    async with asyncio.timeout(5):
        await supervisor.stop()
    assert idler.ended.is_set()


async def test_stop_itself_can_be_cancelled() -> None:
    """A shutdown with a deadline of its own is not held up by a loop that will not end."""
    stubborn = asyncio.Event()

    async def refuses_to_stop() -> None:
        # the first cancellation is ignored; the test's loop ending sends the second
        with contextlib.suppress(asyncio.CancelledError):
            stubborn.set()
            await asyncio.Event().wait()
        await asyncio.Event().wait()

    supervisor = Supervisor()
    supervisor.start("stubborn", refuses_to_stop)
    await stubborn.wait()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await supervisor.stop()


async def test_woken_says_whether_the_wake_up_came() -> None:
    wake = asyncio.Event()
    wake.set()
    assert await woken(wake, 60) is True
    wake.clear()
    assert await woken(wake, 0.01) is False


async def test_the_service_runs_every_background_loop_supervised(world: World) -> None:
    await asyncio.sleep(0)  # the loops' first step
    assert world.app.state.background.names == sorted(
        ["audit_check", "audit_sealer", "callbacks", "issuer_keys", "partner_keys", "partitions", "risk_rules"]
        + (["disbursement_payer", "payment_recovery"] if world.app.state.bank is not None else [])
    )
    for name in world.app.state.background.names:
        assert up(name) == 1.0
