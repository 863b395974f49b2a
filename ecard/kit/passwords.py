"""Argon2id hashing of passwords and PINs, off the event loop, each on a bounded lane of its own."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from ecard.kit.refusal import Refusal

# RFC 9106 §4 second recommended option (64 MiB, t=3, p=4): the memory-hard choice for
# a server that hashes rarely (operator logins, PIN changes).
_HASHER = PasswordHasher(time_cost=3, memory_cost=64 * 1024, parallelism=4)
# A hash of nothing in particular: checked against when a user does not exist, so the
# answer takes as long as for one who does.
_DUMMY = _HASHER.hash("ecard-timing-equaliser")
# Nice value of the hashing threads (Linux keeps one per thread, and Argon2's own lane threads inherit it).
_HASHING_NICE = 10


def _yield_to_the_event_loop() -> None:
    """Lower this hashing thread's priority, so that under contention the event loop gets the CPU first."""
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), _HASHING_NICE)


def _verify(encoded: str, secret: str) -> bool:
    try:
        return _HASHER.verify(encoded, secret)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


class Lane:
    """Hashes of one purpose on threads of their own, at a lower priority, with a bounded queue.

    A burst on one lane (operator logins anyone can send) neither takes the cores from the event loop nor
    delays the other lane (payment PINs); beyond `max_waiting` queued hashes a caller is refused with
    503 `overloaded` at once rather than queued without bound.
    """

    def __init__(self, name: str, threads: int, max_waiting: int) -> None:
        self._executor = ThreadPoolExecutor(
            max_workers=threads, thread_name_prefix=f"argon2-{name}", initializer=_yield_to_the_event_loop
        )
        self._slots = threads + max_waiting
        self._busy = 0

    async def _run(self, secret: str, encoded: str | None) -> str | bool:
        if self._busy >= self._slots:
            raise Refusal("overloaded", "too many requests are being checked; try again shortly")
        self._busy += 1
        try:
            loop = asyncio.get_running_loop()
            if encoded is None:
                return await loop.run_in_executor(self._executor, _HASHER.hash, secret)
            return await loop.run_in_executor(self._executor, _verify, encoded, secret)
        finally:
            self._busy -= 1

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
