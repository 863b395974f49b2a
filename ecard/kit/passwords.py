"""Argon2id hashing of passwords and PINs, off the event loop."""

from __future__ import annotations

import asyncio
import functools

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

# RFC 9106 §4 second recommended option (64 MiB, t=3, p=4): the memory-hard choice for
# a server that hashes rarely (operator logins, PIN changes).
_HASHER = PasswordHasher(time_cost=3, memory_cost=64 * 1024, parallelism=4)
# A hash of nothing in particular: checked against when a user does not exist, so the
# answer takes as long as for one who does.
_DUMMY = _HASHER.hash("ecard-timing-equaliser")


def _verify(encoded: str, secret: str) -> bool:
    try:
        return _HASHER.verify(encoded, secret)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


async def hash_secret(secret: str) -> str:
    return await asyncio.get_running_loop().run_in_executor(None, _HASHER.hash, secret)


async def verify_secret(encoded: str | None, secret: str) -> bool:
    """Constant-time check (Argon2's own comparison); an absent hash still costs one hash."""
    loop = asyncio.get_running_loop()
    if encoded is None:
        await loop.run_in_executor(None, functools.partial(_verify, _DUMMY, secret))
        return False
    return await loop.run_in_executor(None, functools.partial(_verify, encoded, secret))
