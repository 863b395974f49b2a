"""What the citizen pages keep: a page session names the device key that minted it."""

from __future__ import annotations

import msgspec


class PageSession(msgspec.Struct, frozen=True):
    """A page session's record in Redis: the device key whose signed request opened it."""

    key_id: str
