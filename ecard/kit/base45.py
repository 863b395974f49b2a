"""Base45 (RFC 9285), as the `base45` package reads and writes it, in a few C-level passes per code.

The package walks a code character by character in Python: on the verification route that was about a
twentieth of the app's time (load/PROFILE.md). Here a code is translated to digit values in one call, and its
16-bit groups are packed and unpacked with struct; encoding looks each group's three characters up."""

from __future__ import annotations

import struct

_CHARSET = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
_INVALID = 0xFF
# byte -> its digit value, every other byte -> _INVALID
_TO_VALUE = bytes(_CHARSET.index(b) if b in _CHARSET else _INVALID for b in range(256))
# every 16-bit group -> its three characters (65,536 short bytes, about 2.4 MB, made once at import)
_WORD_CHARS = [bytes((_CHARSET[w % 45], _CHARSET[w // 45 % 45], _CHARSET[w // 2025])) for w in range(1 << 16)]


def b45encode(data: bytes) -> str:
    """The base45 text of `data`."""
    pairs = len(data) // 2
    text = b"".join(map(_WORD_CHARS.__getitem__, struct.unpack(f">{pairs}H", data[: 2 * pairs])))
    if len(data) % 2:
        high, low = divmod(data[-1], 45)
        text += bytes((_CHARSET[low], _CHARSET[high]))
    return text.decode("ascii")


def b45decode(text: str) -> bytes:
    """The bytes a base45 text stands for (trailing newlines ignored); ValueError when it is not base45."""
    try:
        values = text.rstrip("\n").encode("ascii").translate(_TO_VALUE)
    except UnicodeEncodeError as exc:
        raise ValueError("Invalid base45 string") from exc
    full, rest = divmod(len(values), 3)
    if rest == 1 or _INVALID in values:
        raise ValueError("Invalid base45 string")
    end = 3 * full
    words = [a + 45 * b + 2025 * c for a, b, c in zip(values[0:end:3], values[1:end:3], values[2:end:3], strict=True)]
    if words and max(words) > 0xFFFF:
        raise ValueError("Invalid base45 string")
    out = struct.pack(f">{full}H", *words)
    if rest == 2:
        last = values[-2] + 45 * values[-1]
        if last > 0xFF:
            raise ValueError("Invalid base45 string")
        out += bytes((last,))
    return out
