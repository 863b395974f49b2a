"""Background loops that keep running: each restarted with backoff when it fails or returns, and metered.

A loop handles the outages it expects (a database or a peer away) itself; what reaches the supervisor is
a bug or a surprise, which would otherwise stop the loop silently (merchant callbacks, among others).
The supervisor logs its type only (an exception's message can quote data), counts it in
`ecard_background_restarts_total{task}`, and holds `ecard_background_up{task}` at 0 until the loop runs again.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Coroutine
from typing import Any

from ecard.kit.metrics import BACKGROUND_RESTARTS, BACKGROUND_UP

log = logging.getLogger("ecard.supervisor")

Loop = Callable[[], Coroutine[Any, Any, None]]


async def woken(wake: asyncio.Event, within_s: float) -> bool:
    """Wait up to `within_s` for `wake`; True when it was set. A loop's idle wait goes through here, not through
    `asyncio.wait_for`: on Python 3.11, wait_for returns instead of raising when the task is cancelled in the turn
    the event was set (python/cpython#86296, fixed in 3.12 by rewriting it on asyncio.timeout). Stopping the
    service wakes its loops as it cancels them, so a loop could lose its cancellation and run on, and the
    supervisor's stop() then waited for it for ever."""
    try:
        async with asyncio.timeout(within_s):
            await wake.wait()
    except TimeoutError:
        return False
    return True


class Supervisor:
    """Runs named loops as tasks of the current event loop until `stop()`.

    After the n-th failure in a row a loop waits between half and all of `base_delay_s`·2^n (at most
    `max_delay_s`) before it starts again; a run that lasted `max_delay_s` or more counts as healthy,
    so the next failure waits the base delay again.
    """

    def __init__(self, base_delay_s: float = 1.0, max_delay_s: float = 60.0) -> None:
        self._base = base_delay_s
        self._max = max_delay_s
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def start(self, name: str, loop: Loop) -> None:
        if name in self._tasks:
            raise ValueError(f"a background task named {name!r} is already supervised")
        self._tasks[name] = asyncio.create_task(self._keep(name, loop), name=f"supervised:{name}")

    @property
    def names(self) -> list[str]:
        return sorted(self._tasks)

    async def stop(self) -> None:
        """Cancel every loop and wait for each to end. A cancellation of the stop itself (a shutdown's deadline)
        ends the wait: it is not taken for one of the loops' own."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        self._tasks.clear()

    async def _keep(self, name: str, loop: Loop) -> None:
        up = BACKGROUND_UP.labels(task=name)
        failures = 0
        try:
            while True:
                up.set(1)
                started = time.monotonic()
                try:
                    await loop()
                    why = "returned"
                except Exception as exc:
                    why = type(exc).__name__
                up.set(0)
                BACKGROUND_RESTARTS.labels(task=name).inc()
                if time.monotonic() - started >= self._max:
                    failures = 0
                delay = min(self._max, self._base * 2**failures)
                failures += 1
                log.error("background task stopped; restarting it", extra={"task": name, "error_type": why})
                await asyncio.sleep(random.uniform(delay / 2, delay))
        finally:
            up.set(0)
