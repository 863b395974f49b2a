"""Identifiers: a readable prefix and 16 random bytes (UUIDv7 layout), never sequential numbers."""

from __future__ import annotations

import base64
import os
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case
_INDEX = {c: i for i, c in enumerate(_ALPHABET)}


def _uuid7_bytes() -> bytes:
    ms = int(time.time() * 1000)
    rand = bytearray(os.urandom(10))
    rand[0] = (rand[0] & 0x0F) | 0x70  # version 7
    rand[2] = (rand[2] & 0x3F) | 0x80  # variant
    return ms.to_bytes(6, "big") + bytes(rand)


def encode(raw: bytes) -> str:
    number = int.from_bytes(raw, "big")
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[number & 31])
        number >>= 5
    return "".join(reversed(chars))


def decode(text: str) -> bytes:
    number = 0
    for ch in text:
        number = (number << 5) | _INDEX[ch]
    return number.to_bytes(17, "big")[1:]


def new_id(prefix: str) -> str:
    return f"{prefix}_{encode(_uuid7_bytes())}"


def id_to_bytes(value: str) -> bytes:
    """The 16 bytes behind an id such as `crd_...`; ValueError if it is not one."""
    _, _, body = value.partition("_")
    if len(body) != 26 or any(c not in _INDEX for c in body):
        raise ValueError("not an ecard id")
    return decode(body)


def id_from_bytes(prefix: str, raw: bytes) -> str:
    if len(raw) != 16:
        raise ValueError("an id is 16 bytes")
    return f"{prefix}_{encode(raw)}"


def random_token(nbytes: int = 32) -> str:
    return base64.urlsafe_b64encode(os.urandom(nbytes)).rstrip(b"=").decode()
