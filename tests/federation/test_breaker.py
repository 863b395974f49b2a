"""The per-partner circuit breaker: closed, open after repeated failures, one trial after the cool-down."""

from __future__ import annotations

import asyncio
import contextlib

from ecard.federation import Breaker


class Ticks:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_the_threshold_lets_one_trial_through_after_the_cooldown_and_closes_on_success() -> None:
    ticks = Ticks()
    breaker = Breaker(threshold=3, cooldown_s=5.0, now=ticks)
    for _ in range(2):
        assert breaker.allow()
        breaker.failed()
    assert breaker.allow()  # two failures: still closed
    breaker.failed()
    assert not breaker.allow()  # three: open
    ticks.now += 4.9
    assert not breaker.allow()
    ticks.now += 0.2
    assert breaker.allow()  # cool-down over: one trial
    assert not breaker.allow()  # and only one while it is out
    breaker.failed()
    assert not breaker.allow()  # the trial failed: open again for a full cool-down
    ticks.now += 5.1
    assert breaker.allow()
    breaker.succeeded()
    assert breaker.allow()
    assert breaker.allow()  # closed


def test_a_success_resets_the_count_of_failures_in_a_row() -> None:
    breaker = Breaker(threshold=3, cooldown_s=5.0, now=Ticks())
    breaker.failed()
    breaker.failed()
    breaker.succeeded()
    breaker.failed()
    breaker.failed()
    assert breaker.allow()


async def test_a_trial_call_that_is_cancelled_frees_the_trial_rather_than_holding_the_circuit_open() -> None:
    ticks = Ticks()
    breaker = Breaker(threshold=1, cooldown_s=5.0, now=ticks)
    breaker.failed()
    ticks.now += 5.1
    assert breaker.allow()  # the one trial after the cool-down
    assert not breaker.allow()
    started = asyncio.Event()

    async def trial() -> None:
        with breaker.call():
            started.set()
            await asyncio.Event().wait()  # a partner that never answers, until the terminal hangs up

    task = asyncio.create_task(trial())
    await started.wait()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert breaker.allow()  # the next request is the trial now: the circuit is not stuck open
    with breaker.call() as outcome:
        outcome.ok = True
    assert breaker.allow()
    assert breaker.allow()  # closed


async def test_the_outcome_of_a_call_is_recorded_when_the_call_raises() -> None:
    breaker = Breaker(threshold=1, cooldown_s=5.0, now=Ticks())
    with contextlib.suppress(RuntimeError), breaker.call() as outcome:
        outcome.ok = False
        raise RuntimeError
    assert not breaker.allow()  # the failure counted: open
