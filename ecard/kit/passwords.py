"""Argon2id hashing of passwords and PINs, off the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

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


# Hashes run on threads of their own, at most one per two CPUs and at a lower priority: a burst of PIN checks
# (payments) queues here instead of taking the cores from the event loop, and never waits behind, or delays, the
# loop's default executor.
_EXECUTOR = ThreadPoolExecutor(
    max_workers=max(1, (os.cpu_count() or 1) // 2),
    thread_name_prefix="argon2",
    initializer=_yield_to_the_event_loop,
)


def _verify(encoded: str, secret: str) -> bool:
    try:
        return _HASHER.verify(encoded, secret)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


async def hash_secret(secret: str) -> str:
    return await asyncio.get_running_loop().run_in_executor(_EXECUTOR, _HASHER.hash, secret)


async def verify_secret(encoded: str | None, secret: str) -> bool:
    """Constant-time check (Argon2's own comparison); an absent hash still costs one hash."""
    loop = asyncio.get_running_loop()
    if encoded is None:
        await loop.run_in_executor(_EXECUTOR, functools.partial(_verify, _DUMMY, secret))
        return False
    return await loop.run_in_executor(_EXECUTOR, functools.partial(_verify, encoded, secret))
