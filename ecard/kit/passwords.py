"""Argon2id hashing of passwords and PINs, off the event loop, each on a bounded lane of its own."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from ecard.kit.metrics import ARGON2_BUSY, ARGON2_RUNS, ARGON2_SHED
from ecard.kit.refusal import Refusal

# RFC 9106 §4 second recommended option (64 MiB, t=3, p=4): the memory-hard choice for
# a server that hashes rarely (operator logins, PIN changes).
_HASHER = PasswordHasher(time_cost=3, memory_cost=64 * 1024, parallelism=4)
# A hash of nothing in particular: checked against when a user does not exist, so the
# answer takes as long as for one who does.
_DUMMY = _HASHER.hash("ecard-timing-equaliser")
# Nice value of the hashing threads (Linux keeps one per thread, and Argon2's own lane threads inherit it).
_HASHING_NICE = 10
# What one hash is taken to cost until a lane has timed its own (RFC 9106's second option, one core).
_FIRST_GUESS_S = 0.25


def _yield_to_the_event_loop() -> None:
    """Lower this hashing thread's priority, so that under contention the event loop gets the CPU first."""
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), _HASHING_NICE)


def _verify(encoded: str, secret: str) -> bool:
    try:
        return _HASHER.verify(encoded, secret)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def _timed(work: Callable[..., str | bool], *args: str) -> tuple[str | bool, float]:
    """`work(*args)` and the seconds it took, measured on the hashing thread (queueing left out)."""
    started = time.perf_counter()
    done = work(*args)
    return done, time.perf_counter() - started


class Lane:
    """Hashes of one purpose on threads of their own, at a lower priority, with a bounded queue.

    A burst on one lane (operator logins anyone can send) neither takes the cores from the event loop nor
    delays the other lane (payment PINs); beyond `max_waiting` queued hashes a caller is refused with
    503 `overloaded` at once rather than queued without bound, told (Retry-After) how long the queue
    ahead of it takes to drain at the lane's own measured pace.
    """

    def __init__(self, name: str, threads: int, max_waiting: int) -> None:
        self.name = name
        self.threads = threads
        self.capacity = threads + max_waiting
        self._executor = ThreadPoolExecutor(
            max_workers=threads, thread_name_prefix=f"argon2-{name}", initializer=_yield_to_the_event_loop
        )
        self._busy = 0
        self._seconds_per_hash = _FIRST_GUESS_S

    @property
    def busy(self) -> int:
        """Hashes running or queued on this lane now."""
        return self._busy

    def drain_s(self) -> int:
        """Whole seconds (at least one) until what the lane holds now has run."""
        return max(1, math.ceil(self._busy * self._seconds_per_hash / self.threads))

    async def _run(self, secret: str, encoded: str | None) -> str | bool:
        if self._busy >= self.capacity:
            ARGON2_SHED.labels(lane=self.name).inc()
            raise Refusal(
                "overloaded", "too many requests are being checked; try again shortly", retry_after=self.drain_s()
            )
        self._busy += 1
        ARGON2_BUSY.labels(lane=self.name).inc()
        try:
            loop = asyncio.get_running_loop()
            if encoded is None:
                done, seconds = await loop.run_in_executor(self._executor, _timed, _HASHER.hash, secret)
            else:
                done, seconds = await loop.run_in_executor(self._executor, _timed, _verify, encoded, secret)
            ARGON2_RUNS.labels(lane=self.name).inc()
            # a moving average: the pace the lane keeps now, not at start-up
            self._seconds_per_hash = 0.8 * self._seconds_per_hash + 0.2 * seconds
            return done
        finally:
            self._busy -= 1
            ARGON2_BUSY.labels(lane=self.name).dec()

    async def hash(self, secret: str) -> str:
        hashed = await self._run(secret, None)
        assert isinstance(hashed, str)
        return hashed

    async def verify(self, encoded: str | None, secret: str) -> bool:
        """Constant-time check (Argon2's own comparison); an absent hash still costs one hash."""
        matched = await self._run(secret, encoded if encoded is not None else _DUMMY)
        return encoded is not None and matched is True


# One thread per two CPUs each: PINs and logins never wait behind each other, nor behind the loop's default executor.
_THREADS = max(1, (os.cpu_count() or 1) // 2)
PINS = Lane("pin", _THREADS, max_waiting=64)
LOGINS = Lane("login", _THREADS, max_waiting=8)
